/*-------------------------------------------------------------------------
 *
 * response.h
 *	  Reading the services' answers: the few fields campus_sync acts on,
 *	  secrets redacted (after JSON decoding), bodies made safe to show as
 *	  jsonb.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_RESPONSE_H
#define CAMPUS_SYNC_RESPONSE_H

#include "postgres.h"

#include "service.h"

#include "nodes/pg_list.h"
#include "utils/jsonb.h"

/* Fields of an answer, as text (numbers too); NULL when absent. */
struct ResponseInfo
{
	bool		is_json;
	/* the members services answer with, as text (NULL: absent) */
	char	   *status;			/* "status" (OPS-COM's "success") */
	char	   *reference_id;	/* "reference_id" */
	char	   *error_code;		/* "ErrorCode" */
	char	   *error_message;	/* "ErrorMessage" */
	char	   *id;				/* "id" */
	char	   *message;		/* "message", else "error" */
	char	   *login_link;		/* "links"."login" */
	char	   *expiration_date;	/* "expirationDate" */
};

extern char *response_text(const char *raw, size_t len, bool cut);
extern void response_info_parse(const char *text, ResponseInfo *info);
extern char *response_secret_field(const char *raw, size_t len, const char *key);
extern Jsonb *response_jsonb(const char *text);
extern char *response_excerpt(const char *text);
extern char *response_first_line(const char *text);

/* for a service that reads more of its answers (cJSON: cjson/cJSON.h) */
struct cJSON;
extern bool response_is_json(const char *text);
extern char *response_scalar_text(const struct cJSON *item);
extern char *response_member_text(const struct cJSON *obj, const char *key);

#endif							/* CAMPUS_SYNC_RESPONSE_H */
