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

#include "service.h"

/* campus_sync.admit_disables() is told the server's, or this */
#define DEFAULT_MAX_DISABLES_PER_HOUR 100

struct SyncTarget
{
	Oid			server_oid;
	char	   *server_name;
	const ServiceDescriptor *service;
	char	   *url;			/* base URL, without a trailing slash */
	int			connect_timeout_ms;
	int			timeout_ms;
	int			concurrency;
	int			max_attempts;
	int			retry_max_delay_s;
	int			max_rate;		/* requests per second; 0: unlimited */
	char	   *ca_file;		/* NULL: the system's CA store */
	bool		verify_tls;
	bool		on_invalid_error;	/* on_invalid 'error' */
	bool		skip_unchanged; /* send no body the target has (sync_state.c) */
	bool		on_delete_disable;	/* on_delete 'disable' */
	int			max_disables_per_hour;
	List	   *required_fields;	/* extra required API fields (char *) */
	void	   *options;		/* the service's own (service->options_size) */
};

/* The secret of the user mapping that applies to a role. */
struct TargetSecret
{
	const char *option;			/* the user mapping option it is */
	Oid			umid;			/* the pg_user_mapping row; InvalidOid: none */
	char	   *value;			/* NULL: none (a service that may go without) */
};

extern const char *target_key_field(SyncTarget *target);

extern SyncTarget *target_load(const char *server_name, Jsonb *call_options,
							   const ServiceDescriptor *expected,
							   Oid check_usage_role);
extern SyncTarget *target_load_oid(Oid server_oid);
extern TargetSecret *target_secret(SyncTarget *target, Oid roleid,
								   bool missing_ok);
extern List *target_all_servers(void);
extern const char *defelem_value(List *options, const char *name);

#endif							/* CAMPUS_SYNC_TARGET_H */
