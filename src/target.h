/*-------------------------------------------------------------------------
 *
 * target.h
 *	  A sync target: a foreign server of the campus_sync wrapper, its
 *	  options, and the secret from the user mapping that applies.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_TARGET_H
#define CAMPUS_SYNC_TARGET_H

#include "postgres.h"

#include "nodes/pg_list.h"
#include "utils/jsonb.h"

typedef enum ServiceKind
{
	SERVICE_ANY = -1,			/* target_load: a server of either service */
	SERVICE_OPSCOM,
	SERVICE_CLOUDCARD
} ServiceKind;

/* How a CloudCard request authenticates. */
typedef enum SecretKind
{
	SECRET_OPSCOM_API_TOKEN,	/* apiToken in the OPS-COM body */
	SECRET_CLOUDCARD_AUTH_TOKEN,	/* fixed X-Auth-Token */
	SECRET_CLOUDCARD_PAT		/* exchanged for a session token */
} SecretKind;

typedef struct SyncTarget
{
	Oid			server_oid;
	char	   *server_name;
	ServiceKind service;
	char	   *url;			/* base URL, without a trailing slash */
	int			connect_timeout_ms;
	int			timeout_ms;
	int			concurrency;
	int			max_attempts;
	int			retry_max_delay_s;
	char	   *ca_file;		/* NULL: the system's CA store */
	bool		verify_tls;
	bool		on_invalid_error;	/* on_invalid 'error' */
	List	   *required_fields;	/* extra required API fields (char *) */
	/* OPS-COM */
	char	   *login_source;	/* NULL when not set */
	/* CloudCard */
	bool		find_by_email;	/* find_by 'email' (else 'identifier') */
	bool		send_invitation;
	bool		update_roles;
	bool		api_people;		/* api 'people' (deprecated endpoint) */
} SyncTarget;

/* The secret of the user mapping that applies to a role. */
typedef struct TargetSecret
{
	SecretKind	kind;
	Oid			umid;			/* the pg_user_mapping row it came from */
	char	   *value;
} TargetSecret;

extern const char *service_name(ServiceKind service);
extern const char *target_key_field(SyncTarget *target);

extern SyncTarget *target_load(const char *server_name, Jsonb *call_options,
							   ServiceKind expected, Oid check_usage_role);
extern SyncTarget *target_load_oid(Oid server_oid);
extern TargetSecret *target_secret(SyncTarget *target, Oid roleid,
								   bool missing_ok);
extern List *target_all_servers(void);

#endif							/* CAMPUS_SYNC_TARGET_H */
