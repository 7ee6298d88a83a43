/* SPDX-License-Identifier: MIT */
/* cvmconv-sim's state: the command line, the rows and how their shared side
 * was backed (see sim_cli.h). Filled by sim_options.c and cvmconv-sim.c,
 * read by sim_report.c. */
#include "sim_cli.h"

struct options opt;
struct row *rows;
size_t nrows;
bool shared_huge;
char backing_note[320];
uint64_t hugepages_reserved;
