/* SPDX-License-Identifier: MIT */
/* Layer 1, utilities: the growable-array helper every part uses. */
#include <errno.h>
#include <stdlib.h>

#include "util.h"

int grow_array(void **arr, size_t elem, size_t *cap, size_t need)
{
	size_t ncap;
	void *n;

	if (need <= *cap)
		return 0;
	ncap = *cap ? *cap : 16;
	while (ncap < need)
		ncap *= 2;
	n = realloc(*arr, ncap * elem);
	if (!n)
		return -ENOMEM;
	*arr = n;
	*cap = ncap;
	return 0;
}
