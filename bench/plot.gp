# The chart of a bench/run, written by it as
#   gnuplot -e "cpufile='R.cpu'; idlefile='R.idle'; thrfile='R.thr'; varsfile='R.vars';
#               outfile='R.png'" bench/plot.gp
# thrfile:  "workload" then median min max of spindle's throughput over libevent's,
#           nginx's, epoll_srv's (the floor) and redis-server's (command rows), per-round
#           ratios as in the table: >1 means spindle serves more.
# cpufile:  "workload" then median min max of the server CPU microseconds per request
#           (per message for echo, per command for RESP) of spindle, libevent, nginx,
#           epoll_srv and redis-server.
# idlefile: one line per server (spindle, libevent, nginx): "server" then median min max
#           of its RSS bytes per idle connection, as in the table.
# varsfile: gnuplot assignments: runinfo, machine, warnings, nwarnings, quick, has_thr,
#           has_cpu, has_idle.  "-" marks what was not measured.

load varsfile
if (!exists("outfile")) outfile = 'bench/results/latest.png'

set terminal pngcairo size 1200,900 font "sans,10" noenhanced
set output outfile
set datafile missing "-"
set style data histogram
set style histogram errorbars gap 2 lw 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key tmargin center horizontal maxrows 1
set yrange [0:*]
set offsets 0, 0, graph 0.1, 0

top = 0.84 - 0.02 * (nwarnings > 3 ? nwarnings - 3 : 0)
set multiplot

# The header, drawn with the first panel: what was run, where and when, what makes it weak.
set label 1 "spindle and its baselines on 127.0.0.1" at screen 0.5, 0.985 center font "sans,13"
set label 2 runinfo at screen 0.5, 0.958 center
set label 3 machine at screen 0.5, 0.938 center
unset_header = "unset label 1; unset label 2; unset label 3; unset label 4"
if (nwarnings > 0) {
    set label 4 warnings at screen 0.03, 0.912 left tc rgb (quick ? "#cc0000" : "#b35900") \
        font (quick ? "sans,11" : "sans,10")
}

# A --quick run is a smoke test: say so across every panel too.
mark(size) = sprintf("sans,%d", size)
if (quick) {
    set label 10 "--quick: not a measurement" at graph 0.5, 0.55 center font mark(26) \
        tc rgb "#f2b8b8" back
}

if (has_thr) {
    set origin 0, 0.46
    set size 1, top - 0.46
    set title "Throughput relative to each server (median of per-round ratios; bars: min..max); >1 = spindle serves more"
    set ylabel "spindle / server"
    set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead dt 2 lw 1.5 lc rgb "black" front
    plot thrfile using 2:3:4:xtic(1) title "spindle / libevent" lc rgb "#4477aa", \
         '' using 5:6:7 title "spindle / nginx" lc rgb "#ee6677", \
         '' using 8:9:10 title "spindle / epoll_srv (floor)" \
            lc rgb "#999999", \
         '' using 11:12:13 title "spindle / redis" lc rgb "#aa3377"
    unset arrow 1
    @unset_header
}
if (has_cpu) {
    set origin 0, 0
    set size (has_idle ? 0.7 : 1), (has_thr ? 0.46 : top)
    if (quick) { set label 10 font mark(has_idle ? 20 : 26) }
    set title "Server CPU per request (per message for echo, per command for RESP); lower is better"
    set ylabel "CPU microseconds"
    plot cpufile using 2:3:4:xtic(1) title "spindle" lc rgb "#228833", \
         '' using 5:6:7 title "libevent" lc rgb "#4477aa", \
         '' using 8:9:10 title "nginx" lc rgb "#ee6677", \
         '' using 11:12:13 title "epoll_srv (floor)" lc rgb "#999999", \
         '' using 14:15:16 title "redis" lc rgb "#aa3377"
    @unset_header
}

if (has_idle) {
    set origin (has_cpu ? 0.7 : 0), 0
    set size (has_cpu ? 0.3 : 1), (has_thr ? 0.46 : top)
    if (quick && has_cpu) { unset label 10 }
    set title "RSS per idle connection (bars: min..max)\nlower is better"
    set ylabel "bytes"
    set xrange [-0.6:2.6]
    set xtics nomirror
    set linetype 11 lc rgb "#228833"
    set linetype 12 lc rgb "#4477aa"
    set linetype 13 lc rgb "#ee6677"
    set style fill solid 0.85 border -1
    plot idlefile using 0:2:3:4:(0.7):($0 + 11):xtic(1) with boxerrorbars lc variable notitle
}

unset multiplot
