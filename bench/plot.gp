# Bar chart of spindle's throughput relative to each baseline, written by bench/run as
#   gnuplot -e "datafile='RESULT.dat'; outfile='RESULT.png'" bench/plot.gp
# datafile: one line per workload:
#   "workload" vs_libevent min max vs_nginx min max      ("-" where not measured)
# Values are medians of per-round ratios, >1 means spindle is better; for "idle" the ratio
# is the baseline's RSS per connection over spindle's.

if (!exists("datafile")) datafile = 'bench/results/latest.dat'
if (!exists("outfile")) outfile = 'bench/results/latest.png'

set terminal pngcairo size 1000,560 font "sans,10"
set output outfile
set datafile missing "-"
set title "spindle relative to the baselines (median of per-round ratios; bars: min..max)\n>1 = spindle better; idle: baseline RSS per connection / spindle's"
set style data histogram
set style histogram errorbars gap 2 lw 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set yrange [0:*]
set offsets 0, 0, graph 0.1, 0
set ylabel "ratio"
set grid ytics
set key top right
set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead dt 2 lw 1.5 lc rgb "black" front

plot datafile using 2:3:4:xtic(1) title "vs libevent (evhttp / bufferevent)" lc rgb "#4477aa", \
     '' using 5:6:7 title "vs nginx" lc rgb "#ee6677"
