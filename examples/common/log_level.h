/* SPDX-License-Identifier: MIT */
/* The examples' name for a cvmconv log level (syslog levels, see cvmconv.h:
 * struct cvmconv_config.log). Header-only; thread-safe. */
#ifndef CVMCONV_EXAMPLES_LOG_LEVEL_H
#define CVMCONV_EXAMPLES_LOG_LEVEL_H

#include <syslog.h>

/* "err", "warn", "info" or "debug". */
static inline const char *example_log_level_name(int level)
{
	if (level <= LOG_ERR)
		return "err";
	if (level <= LOG_WARNING)
		return "warn";
	return level <= LOG_INFO ? "info" : "debug";
}

#endif /* CVMCONV_EXAMPLES_LOG_LEVEL_H */
