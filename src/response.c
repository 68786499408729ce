/*-------------------------------------------------------------------------
 *
 * response.c
 *	  Reading the services' answers.  An answer is redacted before anything
 *	  else looks at it (a service that echoes a token back must not put it
 *	  in a result): a JSON body is decoded, every string in it redacted
 *	  (secrets.c) and the JSON rebuilt, so that the jsonb shown, the fields
 *	  read and the excerpts in messages all come from the redacted form.
 *	  Then cJSON reads the few fields campus_sync acts on, copied into
 *	  palloc'd memory, the cJSON tree freed on every path.
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
#include "utils/memutils.h"

#include "compat.h"
#include "response.h"
#include "secrets.h"

#define EXCERPT_CHARS 300

/*
 * Nesting deeper than this is not read as JSON.  PostgreSQL's JSON parser
 * recurses once per level and raises "stack depth limit exceeded" deep
 * enough, which a remote must not be able to cause; cJSON stops at the
 * same depth (CJSON_NESTING_LIMIT), so both parsers agree on what is JSON.
 */
#define RESPONSE_MAX_DEPTH 1000

/*
 * Of a body cut at HTTP_MAX_RESPONSE only this much is read: it is not
 * JSON anyway, and only its beginning is ever shown (response_excerpt).
 */
#define RESPONSE_CUT_KEEP (64 * 1024)

/* Is the nesting of text within RESPONSE_MAX_DEPTH?  Strings are skipped. */
static bool
depth_ok(const char *text)
{
	int			depth = 0;
	bool		in_string = false;

	for (const char *p = text; *p; p++)
	{
		if (in_string)
		{
			if (*p == '\\' && p[1] != '\0')
				p++;
			else if (*p == '"')
				in_string = false;
		}
		else if (*p == '"')
			in_string = true;
		else if (*p == '[' || *p == '{')
		{
			if (++depth > RESPONSE_MAX_DEPTH)
				return false;
		}
		else if (*p == ']' || *p == '}')
			depth--;
	}
	return true;
}

/* Is text JSON that jsonb_in will take?  Never raises. */
bool
response_is_json(const char *text)
{
	JsonLexContext *lex;

	if (!depth_ok(text))
		return false;
	lex = cs_json_lexer(text, GetDatabaseEncoding());
	return pg_parse_json(lex, &nullSemAction) == JSON_SUCCESS;
}

/*
 * Rebuilding a JSON text with every string, keys included, redacted after
 * the parser has decoded its escapes (a secret written as "\u0070at-..."
 * or "a\/b" is found).  Numbers, true, false and null are copied as they
 * came.  The way jsonfuncs.c's transform_json_string_values does it.
 */
typedef struct RedactState
{
	StringInfoData out;
} RedactState;

static CS_JSON_ACTION
redact_object_start(void *arg)
{
	appendStringInfoChar(&((RedactState *) arg)->out, '{');
	CS_JSON_ACTION_DONE;
}

static CS_JSON_ACTION
redact_object_end(void *arg)
{
	appendStringInfoChar(&((RedactState *) arg)->out, '}');
	CS_JSON_ACTION_DONE;
}

static CS_JSON_ACTION
redact_array_start(void *arg)
{
	appendStringInfoChar(&((RedactState *) arg)->out, '[');
	CS_JSON_ACTION_DONE;
}

static CS_JSON_ACTION
redact_array_end(void *arg)
{
	appendStringInfoChar(&((RedactState *) arg)->out, ']');
	CS_JSON_ACTION_DONE;
}

static CS_JSON_ACTION
redact_field_start(void *arg, char *fname, bool isnull)
{
	StringInfo	out = &((RedactState *) arg)->out;

	(void) isnull;
	if (out->data[out->len - 1] != '{')
		appendStringInfoChar(out, ',');
	escape_json(out, secrets_redact(fname));
	appendStringInfoChar(out, ':');
	CS_JSON_ACTION_DONE;
}

static CS_JSON_ACTION
redact_element_start(void *arg, bool isnull)
{
	StringInfo	out = &((RedactState *) arg)->out;

	(void) isnull;
	if (out->data[out->len - 1] != '[')
		appendStringInfoChar(out, ',');
	CS_JSON_ACTION_DONE;
}

static CS_JSON_ACTION
redact_scalar(void *arg, char *token, JsonTokenType tokentype)
{
	StringInfo	out = &((RedactState *) arg)->out;

	if (tokentype == JSON_TOKEN_STRING)
		escape_json(out, secrets_redact(token));
	else
		appendStringInfoString(out, token);
	CS_JSON_ACTION_DONE;
}

/*
 * text, when it is JSON, rebuilt with its strings redacted, in the
 * caller's memory context; NULL when it is not JSON.  The parser's
 * garbage goes with a temporary context.
 */
static char *
redact_json(const char *text)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext work;
	RedactState state;
	JsonSemAction sem = {0};
	JsonLexContext *lex;
	char	   *result = NULL;

	if (!depth_ok(text))
		return NULL;
	work = AllocSetContextCreate(caller, "campus_sync response",
								 ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(work);
	initStringInfo(&state.out);
	sem.semstate = &state;
	sem.object_start = redact_object_start;
	sem.object_end = redact_object_end;
	sem.array_start = redact_array_start;
	sem.array_end = redact_array_end;
	sem.object_field_start = redact_field_start;
	sem.array_element_start = redact_element_start;
	sem.scalar = redact_scalar;
	lex = cs_json_lexer(text, GetDatabaseEncoding());
	if (pg_parse_json(lex, &sem) == JSON_SUCCESS)
		result = MemoryContextStrdup(caller, state.out.data);
	MemoryContextSwitchTo(caller);
	MemoryContextDelete(work);
	return result;
}

/*
 * response_text
 *		A response body as server-encoded text, with every secret this
 *		backend has used redacted: a JSON body decoded and rebuilt (see
 *		redact_json), any other body redacted as it is.  NULL for an empty
 *		body; a note for one that is not UTF-8.  cut: the body was cut at
 *		HTTP_MAX_RESPONSE, so it is not JSON, and only its beginning (to the
 *		last whole character) is kept.
 */
char *
response_text(const char *raw, size_t len, bool cut)
{
	char	   *text;
	char	   *json;

	if (raw == NULL || len == 0)
		return NULL;
	if (cut && len > RESPONSE_CUT_KEEP)
		len = RESPONSE_CUT_KEEP;
	if (cut)
	{
		/* the cut may have split a character: drop its first bytes */
		int			valid = pg_encoding_verifymbstr(PG_UTF8, raw, (int) len);

		if (len - valid < MAX_MULTIBYTE_CHAR_LEN)
			len = valid;
		if (len == 0)
			return NULL;
	}
	if (!pg_verify_mbstr(PG_UTF8, raw, (int) len, true))
		return pstrdup("(the response is not valid UTF-8)");
	text = pg_any_to_server(raw, (int) len, PG_UTF8);
	if (text == raw)
		text = pnstrdup(raw, len);
	if (!cut && (json = redact_json(text)) != NULL)
	{
		pfree(text);
		return json;
	}
	return secrets_redact(text);
}

/* A JSON scalar as text; NULL for null, objects and arrays. */
char *
response_scalar_text(const cJSON *item)
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

char *
response_member_text(const cJSON *obj, const char *key)
{
	return response_scalar_text(cJSON_GetObjectItemCaseSensitive(obj, key));
}

/*
 * response_info_parse
 *		The fields of a response_text.  Only a body PostgreSQL also takes for
 *		JSON is read: then it is the rebuilt, redacted one, and cJSON decodes
 *		nothing redaction has not seen decoded.
 */
void
response_info_parse(const char *text, ResponseInfo *info)
{
	cJSON	   *root;

	memset(info, 0, sizeof(ResponseInfo));
	if (text == NULL || !response_is_json(text) || (root = cJSON_Parse(text)) == NULL)
		return;

	PG_TRY();
	{
		info->is_json = true;
		if (cJSON_IsObject(root))
		{
			const cJSON *links = cJSON_GetObjectItemCaseSensitive(root, "links");

			info->status = response_member_text(root, "status");
			info->reference_id = response_member_text(root, "reference_id");
			info->error_code = response_member_text(root, "ErrorCode");
			info->error_message = response_member_text(root, "ErrorMessage");
			info->id = response_member_text(root, "id");
			info->message = response_member_text(root, "message");
			if (info->message == NULL)
				info->message = response_member_text(root, "error");
			if (cJSON_IsObject(links))
				info->login_link = response_member_text(links, "login");
			info->expiration_date = response_member_text(root, "expirationDate");
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

/*
 * response_secret_field
 *		A string member of a JSON object answer that is itself a secret
 *		(CloudCard's tokenValue), read from the raw body, before redaction
 *		would hide it; NULL when there is none.  The caller makes it a
 *		secret at once.
 */
char *
response_secret_field(const char *raw, size_t len, const char *key)
{
	char	   *text;
	cJSON	   *root;
	char	   *volatile value = NULL;

	if (raw == NULL || len == 0 || !pg_verify_mbstr(PG_UTF8, raw, (int) len, true))
		return NULL;
	text = pnstrdup(raw, len);
	root = depth_ok(text) ? cJSON_Parse(text) : NULL;
	explicit_bzero(text, len);
	pfree(text);
	if (root == NULL)
		return NULL;

	PG_TRY();
	{
		cJSON	   *item = cJSON_GetObjectItemCaseSensitive(root, key);

		if (cJSON_IsObject(root) && cJSON_IsString(item))
		{
			value = pstrdup(item->valuestring);
			explicit_bzero(item->valuestring, strlen(item->valuestring));
		}
	}
	PG_FINALLY();
	{
		cJSON_Delete(root);
	}
	PG_END_TRY();
	return value;
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
 * response_first_line
 *		For a body that is not JSON (a proxy's HTML error page, say): its
 *		first line with text in it, markup removed, spaces collapsed, at
 *		most EXCERPT_CHARS characters.
 */
char *
response_first_line(const char *text)
{
	StringInfoData line;
	bool		in_tag = false;

	if (text == NULL || text[0] == '\0')
		return pstrdup("(empty body)");
	initStringInfo(&line);
	for (const char *p = text; *p; p++)
	{
		if (*p == '\n' && line.len > 0)
			break;
		if (*p == '<')
			in_tag = true;
		else if (*p == '>' && in_tag)
			in_tag = false;
		else if (in_tag)
			continue;
		else if (isspace((unsigned char) *p))
		{
			if (line.len > 0 && line.data[line.len - 1] != ' ')
				appendStringInfoChar(&line, ' ');
		}
		else
			appendStringInfoChar(&line, *p);
	}
	while (line.len > 0 && line.data[line.len - 1] == ' ')
		line.data[--line.len] = '\0';
	if (line.len == 0)
		return pstrdup("(a page with no text)");
	return response_excerpt(line.data);
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
	if (response_is_json(text))
		return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
	initStringInfo(&buf);
	escape_json(&buf, response_excerpt(text));
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}
