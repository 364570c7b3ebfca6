/*
 * The error log: one line per message, written with a single write(2) to a
 * file opened O_APPEND (or stderr), so lines from the master and every worker
 * interleave whole.  This is the one place in shared/ that writes messages;
 * the runtime itself never calls it.
 */
#ifndef SPINDLE_LOG_H
#define SPINDLE_LOG_H

enum sp_log_level { SP_LOG_ERROR, SP_LOG_WARN, SP_LOG_INFO, SP_LOG_DEBUG };

/*
 * Directs the log to path (NULL or "stderr": standard error) and names this
 * process in every line ("master", "worker 2").  Returns 0 or -errno when the
 * file cannot be opened (the previous destination is kept).
 */
int sp_log_open(const char *path, const char *who);

/* Reopens the current path (log rotation, SIGUSR1).  Returns 0 or -errno. */
int sp_log_reopen(void);

/*
 * Opens path for appending as every log file is opened (O_APPEND, created
 * 0644, close-on-exec).  Returns the fd, which the caller owns, or -errno.
 * The master opens the log files of its workers with it.
 */
int sp_log_open_file(const char *path);

/*
 * Makes the log write to fd from now on, keeping the fd number lines go to
 * (dup2), as a worker does with the error log its master reopened.  When
 * the log is standard error nothing changes.  Takes ownership of fd.
 * Returns 0 or -errno.
 */
int sp_log_adopt(int fd);

/* Changes the process name printed in each line (after fork). */
void sp_log_set_who(const char *who);

/* The fd lines go to, for processes that must keep it across fork. */
int sp_log_fd(void);

void sp_log(enum sp_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define sp_log_error(...) sp_log(SP_LOG_ERROR, __VA_ARGS__)
#define sp_log_warn(...)  sp_log(SP_LOG_WARN, __VA_ARGS__)
#define sp_log_info(...)  sp_log(SP_LOG_INFO, __VA_ARGS__)

#endif
