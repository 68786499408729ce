/*-------------------------------------------------------------------------
 *
 * opscom.h
 *	  The OPS-COM service's parts, for its own files: options and the
 *	  descriptor (service_opscom.c), the body builder (payload_opscom.c),
 *	  the requests (request_opscom.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_OPSCOM_H
#define CAMPUS_SYNC_OPSCOM_H

#include "postgres.h"

#include "payload.h"
#include "request_service.h"

/* The server options only OPS-COM takes. */
typedef struct OpscomOptions
{
	char	   *login_source;	/* NULL when not set */
} OpscomOptions;

#define opscom_options(target) ((OpscomOptions *) (target)->options)

extern const ServiceDescriptor opscom_service;

/* payload_opscom.c */
extern PayloadPlan *opscom_plan_create(SyncTarget *target, TupleDesc desc,
									   List *mapping);
extern void opscom_build(PayloadPlan *plan, RowValues *row, Payload *out);
extern bool opscom_is_field(const char *name);
extern int *opscom_source_columns(PayloadPlan *plan, int *n);

/* One OPS-COM user type. */
typedef struct UserType
{
	char	   *id;
	char	   *type_name;
	char	   *ext_info;
} UserType;

/* request_opscom.c */
extern List *opscom_user_types(const char *text);
extern bool opscom_prepare(SyncJob *job, JobRequest *req);
extern void opscom_judge(SyncJob *job, ResponseInfo *info, const char *location);
extern void opscom_check(SyncTarget *target, TargetSecret *secret, ServerCheck *out);

#endif							/* CAMPUS_SYNC_OPSCOM_H */
