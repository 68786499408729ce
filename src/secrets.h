/*-------------------------------------------------------------------------
 *
 * secrets.h
 *	  The secrets this backend has sent somewhere, and the one function
 *	  that redacts them from any text a remote could have written.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_SECRETS_H
#define CAMPUS_SYNC_SECRETS_H

#include "postgres.h"

/* what a secret is replaced with */
#define SECRETS_REDACTED "[redacted]"

/* how many secrets a backend remembers; the least recently used go first */
#define SECRETS_MAX 64

extern void secrets_remember(const char *secret);
extern char *secrets_redact(const char *text);

#endif							/* CAMPUS_SYNC_SECRETS_H */
