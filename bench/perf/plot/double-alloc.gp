# Double allocation after every exit of a boot + devices + runtime churn
# stream: the QEMU-like baseline, cvmconv (both measured by the kernel:
# st_blocks of the MFD_HUGETLB shared memfd minus the live shared bytes)
# and the oracle's minimum. Data: perf_streams --series (bench/perf/run.sh
# writes it and calls this script):
#
#   gnuplot -e "datafile='double-alloc.dat'; outfile='docs/img/double-alloc.png'" \
#           -e "subtitle='...'" bench/perf/plot/double-alloc.gp

if (!exists("datafile")) datafile = 'double-alloc.dat'
if (!exists("outfile")) outfile = 'double-alloc.png'
if (!exists("subtitle")) subtitle = ''

set terminal pngcairo size 960,500 enhanced font 'sans,11' background rgb 'white'
set output outfile
set title "Double allocation after each exit: boot, device bring-up, runtime DMA churn\n{/*0.85 ".subtitle."}"
set xlabel 'exit'
set ylabel 'double allocation (MiB)'
set grid ytics lc rgb '#dddddd'
set key top left box opaque
set border 3
set xtics nomirror
set ytics nomirror
set yrange [0:*]
set xrange [0:*]
set autoscale xfixmax

plot datafile using 1:4 with steps lw 2 lc rgb '#c0392b' title 'QEMU-like baseline (kernel: st\_blocks)', \
     datafile using 1:3 with steps lw 5 lc rgb '#85c1e9' title 'cvmconv (kernel: st\_blocks)', \
     datafile using 1:2 with steps lw 1.2 dt 2 lc rgb '#000000' title 'oracle minimum'
