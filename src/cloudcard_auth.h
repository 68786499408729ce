/*-------------------------------------------------------------------------
 *
 * cloudcard_auth.h
 *	  CloudCard session tokens: a persistent access token (PAT) exchanged
 *	  once per token lifetime (shared by all backends when preloaded),
 *	  renewed before it expires and after CloudCard refuses it; and the
 *	  credentials' check of check_server().
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_CLOUDCARD_AUTH_H
#define CAMPUS_SYNC_CLOUDCARD_AUTH_H

#include "postgres.h"

#include "request_service.h"
#include "target.h"

/* Why no token could be had, when cloudcard_session_token returns NULL. */
typedef struct AuthFailure
{
	char	   *error;
	int			http_status;	/* 0: transport failure */
	bool		temporary;
	double		retry_after_s;
} AuthFailure;

extern void cloudcard_auth_init(void);
extern const char *cloudcard_session_token(SyncTarget *target,
										   TargetSecret *secret,
										   uint64 *generation,
										   AuthFailure *failure);
extern void cloudcard_token_invalidate(TargetSecret *secret, uint64 generation);
extern void cloudcard_check(SyncTarget *target, TargetSecret *secret, ServerCheck *out);

#endif							/* CAMPUS_SYNC_CLOUDCARD_AUTH_H */
