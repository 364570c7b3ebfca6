/*
 * The one clock of the runtime.  Every reading of time goes through here:
 *
 *   sp_now_ns()    monotonic nanoseconds, for intervals, deadlines and timers;
 *                  never goes back.
 *   sp_wall_ns()   wall-clock nanoseconds since the epoch, for stamps (the
 *                  error log).
 *   sp_wall_sec()  the wall-clock second, for the stamps made on every
 *                  request (Date, the access log, the file cache's checks).
 *
 * The wall clock is derived from the monotonic one: wall = monotonic + an
 * offset, measured again (one CLOCK_REALTIME read) when a wall-clock second
 * ends.  So every stamp of a thread comes from one source: a log line and a
 * Date header written in the same instant name the same second, and a step
 * of the system's clock (settimeofday, an NTP step) shows within a second.
 *
 * Like nginx's ngx_time_update(), a scheduler thread reads the clock once
 * each time it wakes from the poller (sp_clock_tick) and what runs in that
 * pass counts from the thread's latest reading: sp_wall_sec() and the poll
 * timeout (sp_clock_pass_ns).  Any sp_now_ns() call in between refreshes it.
 * A pass is short (its fibers run until they wait), so the reading is at
 * most that old; at worst the poll sleeps that much longer, and the idle
 * bound of a fiber-less watch (sp_iom_watch, set after every exchange of a
 * keep-alive connection) ends that much early.  The deadline of an I/O
 * timeout or a sleep is counted from a fresh reading, so it never ends
 * early.  On a thread without a running scheduler every call reads the clock.
 */
#ifndef SPINDLE_CLOCK_H
#define SPINDLE_CLOCK_H

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in nanoseconds (vDSO, no system call). */
uint64_t sp_now_ns(void);

/* The wall clock now, in nanoseconds since the epoch (reads the clock). */
uint64_t sp_wall_ns(void);

/* The wall-clock second of the thread's latest reading in this scheduler
 * pass; of a new reading on a thread without a scheduler. */
time_t sp_wall_sec(void);

/* The monotonic time of the thread's latest reading in this scheduler pass;
 * a new reading on a thread without a scheduler. */
uint64_t sp_clock_pass_ns(void);

/* For the scheduler: sp_clock_tick() when its thread starts a pass (reads the
 * clock), sp_clock_stop() when it stops running on the thread. */
void sp_clock_tick(void);
void sp_clock_stop(void);

#endif
