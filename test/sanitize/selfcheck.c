/*
 * test/sanitize/selfcheck.c: NOT part of the extension.  test/sanitize.sh
 * compiles it with the sanitizer flags into a throwaway library and LOADs
 * it in a throwaway session, to prove that errors in code loaded into the
 * server are reported: a signed integer overflow (UBSan, which goes on),
 * then a heap buffer overflow (ASan, which stops the process).  The
 * volatiles keep the compiler from seeing, or removing, either.
 */
#include "postgres.h"
#include "fmgr.h"

#include <limits.h>
#include <stdlib.h>

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	volatile int big = INT_MAX;
	volatile int sum;
	volatile size_t len = 8;
	volatile char *buf;

	sum = big + 1;				/* selfcheck: signed integer overflow */
	(void) sum;

	buf = malloc(len);
	if (buf == NULL)
		return;
	buf[len] = 'x';				/* selfcheck: heap-buffer-overflow */
	free((void *) buf);
}
