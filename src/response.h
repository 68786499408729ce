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
	char	   *status;			/* OPS-COM "status" */
	char	   *reference_id;	/* OPS-COM "reference_id" */
	char	   *error_code;		/* OPS-COM "ErrorCode" */
	char	   *error_message;	/* OPS-COM "ErrorMessage" */
	char	   *id;				/* CloudCard person "id" */
	char	   *message;		/* CloudCard "message" or "error" */
	char	   *login_link;		/* CloudCard "links"."login" */
	char	   *expiration_date;	/* CloudCard "expirationDate" */
};

extern char *response_text(const char *raw, size_t len, bool cut);
extern void response_info_parse(const char *text, ResponseInfo *info);
extern char *response_secret_field(const char *raw, size_t len, const char *key);
extern Jsonb *response_jsonb(const char *text);
extern char *response_excerpt(const char *text);
extern char *response_first_line(const char *text);

/* One OPS-COM user type. */
typedef struct UserType
{
	char	   *id;
	char	   *type_name;
	char	   *ext_info;
} UserType;

extern List *response_user_types(const char *text);

#endif							/* CAMPUS_SYNC_RESPONSE_H */
