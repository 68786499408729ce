/*-------------------------------------------------------------------------
 *
 * cloudcard.h
 *	  The CloudCard service's parts, for its own files: options and the
 *	  descriptor (service_cloudcard.c), the body builder
 *	  (payload_cloudcard.c), the requests (request_cloudcard.c) and the
 *	  session tokens (cloudcard_auth.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_CLOUDCARD_H
#define CAMPUS_SYNC_CLOUDCARD_H

#include "postgres.h"

#include "payload.h"
#include "request_service.h"

/* The server options only CloudCard takes. */
typedef struct CloudcardOptions
{
	bool		find_by_email;	/* find_by 'email' (else 'identifier') */
	bool		send_invitation;
	bool		update_roles;
	bool		api_people;		/* api 'people' (deprecated endpoint) */
} CloudcardOptions;

#define cloudcard_options(target) ((CloudcardOptions *) (target)->options)

/* The user mapping option whose token is exchanged for sessions. */
#define CLOUDCARD_PAT_OPTION "persistent_access_token"
#define cloudcard_uses_pat(secret) \
	((secret)->option != NULL && strcmp((secret)->option, CLOUDCARD_PAT_OPTION) == 0)

/* JOB_LOOKUP for CloudCard: GET /person/{key} */

extern const ServiceDescriptor cloudcard_service;

/* payload_cloudcard.c */
extern PayloadPlan *cloudcard_plan_create(SyncTarget *target, TupleDesc desc,
										  List *mapping);
extern void cloudcard_build(PayloadPlan *plan, RowValues *row, Payload *out);
extern bool cloudcard_is_field(const char *name);
extern bool cloudcard_is_standard_key(const char *key);
extern PayloadError *cloudcard_key_error(bool find_by_email, const char *key,
										 SourceColumn *col);
extern PayloadError *cloudcard_custom_name_error(const char *name,
												 const char *hint);
extern int *cloudcard_source_columns(PayloadPlan *plan, int *n);
extern const char *cloudcard_role_at(int i);

/* request_cloudcard.c */
extern bool cloudcard_prepare(SyncJob *job, JobRequest *req);
extern void cloudcard_judge(SyncJob *job, ResponseInfo *info, const char *location);
extern char *cloudcard_auth_header(const char *token);

#endif							/* CAMPUS_SYNC_CLOUDCARD_H */
