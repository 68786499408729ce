/*-------------------------------------------------------------------------
 *
 * response.c
 *	  Reading the services' answers with cJSON: only the fields campus_sync
 *	  acts on, copied into palloc'd memory and the cJSON tree freed on every
 *	  path.  Answers are redacted before anything else looks at them: a
 *	  service that echoes a token back must not put it in a result.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "response.h"

#define EXCERPT_CHARS 300
#define REDACTED "[redacted]"

/* text with every occurrence of secret replaced. */
char *
redact(const char *text, const char *secret)
{
	StringInfoData buf;
	size_t		slen;
	const char *p;
	const char *hit;

	if (text == NULL || secret == NULL || secret[0] == '\0' ||
		strstr(text, secret) == NULL)
		return (char *) text;
	slen = strlen(secret);
	initStringInfo(&buf);
	for (p = text; (hit = strstr(p, secret)) != NULL; p = hit + slen)
	{
		appendBinaryStringInfo(&buf, p, hit - p);
		appendStringInfoString(&buf, REDACTED);
	}
	appendStringInfoString(&buf, p);
	return buf.data;
}

/*
 * response_text
 *		A response body as server-encoded text, with the secrets redacted.
 *		NULL for an empty body; a note for one that is not UTF-8.
 */
char *
response_text(const char *raw, size_t len, const char *secret1,
			  const char *secret2)
{
	char	   *text;

	if (raw == NULL || len == 0)
		return NULL;
	if (!pg_verify_mbstr(PG_UTF8, raw, (int) len, true))
		return pstrdup("(the response is not valid UTF-8)");
	text = pg_any_to_server(raw, (int) len, PG_UTF8);
	if (text == raw)
		text = pnstrdup(raw, len);
	text = redact(text, secret1);
	return redact(text, secret2);
}

/* A JSON scalar as text; NULL for null, objects and arrays. */
static char *
scalar_text(const cJSON *item)
{
	if (item == NULL)
		return NULL;
	if (cJSON_IsString(item))
		return pstrdup(item->valuestring);
	if (cJSON_IsNumber(item))
	{
		double		v = item->valuedouble;

		if (v == (double) (int64) v)
			return psprintf(INT64_FORMAT, (int64) v);
		return psprintf("%.17g", v);
	}
	if (cJSON_IsBool(item))
		return pstrdup(cJSON_IsTrue(item) ? "true" : "false");
	return NULL;
}

static char *
member_text(const cJSON *obj, const char *key)
{
	return scalar_text(cJSON_GetObjectItemCaseSensitive(obj, key));
}

void
response_info_parse(const char *text, ResponseInfo *info)
{
	cJSON	   *root;

	memset(info, 0, sizeof(ResponseInfo));
	if (text == NULL || (root = cJSON_Parse(text)) == NULL)
		return;

	PG_TRY();
	{
		info->is_json = true;
		if (cJSON_IsObject(root))
		{
			const cJSON *links = cJSON_GetObjectItemCaseSensitive(root, "links");

			info->status = member_text(root, "status");
			info->reference_id = member_text(root, "reference_id");
			info->error_code = member_text(root, "ErrorCode");
			info->error_message = member_text(root, "ErrorMessage");
			info->id = member_text(root, "id");
			info->message = member_text(root, "message");
			if (info->message == NULL)
				info->message = member_text(root, "error");
			if (cJSON_IsObject(links))
				info->login_link = member_text(links, "login");
			info->token_value = member_text(root, "tokenValue");
			info->expiration_date = member_text(root, "expirationDate");
		}
	}
	PG_CATCH();
	{
		cJSON_Delete(root);
		PG_RE_THROW();
	}
	PG_END_TRY();
	cJSON_Delete(root);
}

/* Is text JSON that jsonb_in will take?  Never raises. */
static bool
is_valid_json(const char *text)
{
	JsonLexContext *lex = makeJsonLexContextCstringLen((char *) text, strlen(text),
													   GetDatabaseEncoding(), true);

	return pg_parse_json(lex, &nullSemAction) == JSON_SUCCESS;
}

/* The first EXCERPT_CHARS characters of a body, for messages. */
char *
response_excerpt(const char *text)
{
	int			len;

	if (text == NULL)
		return pstrdup("(empty body)");
	len = pg_mbcharcliplen(text, strlen(text), EXCERPT_CHARS);
	if ((size_t) len < strlen(text))
		return psprintf("%.*s...", len, text);
	return pstrdup(text);
}

/*
 * response_jsonb
 *		The body as jsonb: itself when it is JSON, else a JSON string of an
 *		excerpt (an HTML error page, say).  NULL for no body.
 */
Jsonb *
response_jsonb(const char *text)
{
	StringInfoData buf;

	if (text == NULL)
		return NULL;
	if (is_valid_json(text))
		return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
	initStringInfo(&buf);
	escape_json(&buf, response_excerpt(text));
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/* OPS-COM's profiles/types/list answer as a list of UserType. */
List *
response_user_types(const char *text)
{
	cJSON	   *root;
	List	   *volatile types = NIL;

	if (text == NULL || (root = cJSON_Parse(text)) == NULL)
		return NIL;

	PG_TRY();
	{
		const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "user_types");
		const cJSON *item;

		if (!cJSON_IsArray(list))
			list = NULL;
		cJSON_ArrayForEach(item, list)
		{
			UserType   *ut;
			const cJSON *ext;

			if (!cJSON_IsObject(item))
				continue;
			ut = palloc0(sizeof(UserType));
			ut->id = member_text(item, "id");
			ut->type_name = member_text(item, "type_name");
			ext = cJSON_GetObjectItemCaseSensitive(item, "ext_info");
			if (cJSON_IsObject(ext) || cJSON_IsArray(ext))
			{
				char	   *printed = cJSON_PrintUnformatted(ext);

				if (printed)
				{
					ut->ext_info = pstrdup(printed);
					cJSON_free(printed);
				}
			}
			else
				ut->ext_info = scalar_text(ext);
			types = lappend(types, ut);
		}
	}
	PG_CATCH();
	{
		cJSON_Delete(root);
		PG_RE_THROW();
	}
	PG_END_TRY();
	cJSON_Delete(root);
	return types;
}
