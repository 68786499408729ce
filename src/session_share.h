/*-------------------------------------------------------------------------
 *
 * session_share.h
 *	  Session tokens shared by every backend and the worker, in shared
 *	  memory: only when campus_sync is preloaded.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_SESSION_SHARE_H
#define CAMPUS_SYNC_SESSION_SHARE_H

#include "postgres.h"

#include "datatype/timestamp.h"

/* longest session token taken */
#define SESSION_TOKEN_MAX_LEN 4096

/* Whose token: a user mapping, with the url and secret it was had for. */
typedef struct SessionKey
{
	Oid			database;
	Oid			umid;
	uint64		fingerprint;	/* of the url and the secret */
} SessionKey;

extern void session_share_request_shmem(void);
extern bool session_share_available(void);
extern bool session_share_get(const SessionKey *key, char *token,
							  TimestampTz *renew_at, uint64 *generation);
extern uint64 session_share_put(const SessionKey *key, const char *token,
								TimestampTz renew_at);
extern void session_share_invalidate(const SessionKey *key, uint64 generation);

#endif							/* CAMPUS_SYNC_SESSION_SHARE_H */
