/*-------------------------------------------------------------------------
 *
 * target.c
 *	  The campus_sync foreign-data wrapper's validator, and loading a sync
 *	  target (server options, per-call options, the user mapping's secret).
 *
 *	  Servers carry the target's options; user mappings carry the secrets,
 *	  so that only roles allowed to read pg_user_mapping can see them; USAGE
 *	  on the server decides who may send to it.  A secret's value never
 *	  appears in a message of this file.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/reloptions.h"
#include "access/table.h"
#include "catalog/pg_foreign_data_wrapper.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_foreign_table.h"
#include "catalog/pg_user_mapping.h"
#include "commands/defrem.h"
#include "foreign/foreign.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/syscache.h"

#include "compat.h"
#include "target.h"

PG_FUNCTION_INFO_V1(campus_sync_fdw_validator);
PG_FUNCTION_INFO_V1(campus_sync_server_key_field);

/* The options every service takes; each service adds its own. */
static const OptionDef server_options[] = {
	{"service", OPT_CHOICE, 0, 0, NULL, false},
	{"url", OPT_URL, 0, 0, NULL, false},
	{"connect_timeout_ms", OPT_INT, 1, 600000, NULL, true},
	{"timeout_ms", OPT_INT, 1, 3600000, NULL, true},
	{"concurrency", OPT_INT, 1, 256, NULL, true},
	{"max_attempts", OPT_INT, 1, 1000, NULL, true},
	{"retry_max_delay_s", OPT_INT, 1, 86400, NULL, true},
	{"ca_file", OPT_STRING, 1, 4096, NULL, true},
	{"verify_tls", OPT_BOOL, 0, 0, NULL, true},
	{"on_invalid", OPT_CHOICE, 0, 0, "queue|error", true},
	{"required_fields", OPT_FIELDS, 0, 0, NULL, true},
	{"max_rate", OPT_INT, 1, 100000, NULL, false},
	{"skip_unchanged", OPT_BOOL, 0, 0, NULL, true},
	{"on_delete", OPT_CHOICE, 0, 0, "ignore|disable", false},
	{"max_disables_per_hour", OPT_INT, 0, 1000000, NULL, false},
	{NULL}
};

/*
 * The API field whose value is the person key.  A queue item records it
 * with the service: changing either changes whom an item would reach.
 */
const char *
target_key_field(SyncTarget *target)
{
	return target->service->key_field(target);
}

static const OptionDef *
find_in(const OptionDef *defs, const char *name)
{
	if (defs)
		for (; defs->name; defs++)
			if (strcmp(defs->name, name) == 0)
				return defs;
	return NULL;
}

/* A server option of every service, or of service (when not NULL). */
static const OptionDef *
find_server_option(const ServiceDescriptor *service, const char *name)
{
	const OptionDef *def = find_in(server_options, name);

	if (def == NULL && service != NULL)
		def = find_in(service->options, name);
	return def;
}

/* The options of deprovisioning, which a service that cannot disable refuses. */
static bool
is_disable_option(const char *name)
{
	return strcmp(name, "on_delete") == 0 || strcmp(name, "max_disables_per_hour") == 0;
}

static void
append_option_names(StringInfo buf, const OptionDef *defs, const ServiceDescriptor *service)
{
	for (; defs && defs->name; defs++)
		if (!(service && service->disable_body == NULL && is_disable_option(defs->name)))
			appendStringInfo(buf, "%s%s", buf->len ? ", " : "", defs->name);
}

/* Every option service takes; every option of any service when NULL. */
static char *
valid_server_option_names(const ServiceDescriptor *service)
{
	StringInfoData buf;

	initStringInfo(&buf);
	append_option_names(&buf, server_options, service);
	if (service != NULL)
		append_option_names(&buf, service->options, service);
	else
		for (int i = 0; i < service_count(); i++)
			append_option_names(&buf, service_at(i)->options, service_at(i));
	return buf.data;
}

static bool
choice_is_valid(const char *choices, const char *value)
{
	size_t		len = strlen(value);
	const char *p = choices;

	while (*p)
	{
		const char *end = strchr(p, '|');
		size_t		n = end ? (size_t) (end - p) : strlen(p);

		if (n == len && strncmp(p, value, n) == 0)
			return true;
		if (!end)
			break;
		p = end + 1;
	}
	return false;
}

/* "a|b" as "a, b" for messages */
static char *
choices_text(const char *choices)
{
	char	   *text = palloc(strlen(choices) * 2 + 1);
	char	   *out = text;

	for (const char *p = choices; *p; p++)
	{
		if (*p == '|')
		{
			*out++ = ',';
			*out++ = ' ';
		}
		else
			*out++ = *p;
	}
	*out = '\0';
	return text;
}

/*
 * Checks a URL with libcurl's own parser, so that what passes here is what
 * curl will request: http or https, a host, no credentials (they would end
 * up in messages), no query or fragment (paths are appended to it).
 */
static void
check_url(const char *value, const char *where)
{
	CURLU	   *u = curl_url();
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *user = NULL;
	char	   *query = NULL;
	char	   *fragment = NULL;
	const char *problem = NULL;

	if (u == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY),
						errmsg("out of memory")));

	if (curl_url_set(u, CURLUPART_URL, value, 0) != CURLUE_OK)
		problem = "it is not a valid absolute URL";
	else
	{
		curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
		curl_url_get(u, CURLUPART_HOST, &host, 0);
		curl_url_get(u, CURLUPART_USER, &user, 0);
		curl_url_get(u, CURLUPART_QUERY, &query, 0);
		curl_url_get(u, CURLUPART_FRAGMENT, &fragment, 0);
		if (scheme == NULL ||
			(pg_strcasecmp(scheme, "http") != 0 && pg_strcasecmp(scheme, "https") != 0))
			problem = "only http and https URLs are allowed";
		else if (host == NULL || host[0] == '\0')
			problem = "it has no host";
		else if (user != NULL)
			problem = "it contains credentials; put secrets in a user mapping";
		else if (query != NULL || fragment != NULL)
			problem = "it has a query or fragment; give the base URL only";
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(user);
	curl_free(query);
	curl_free(fragment);
	curl_url_cleanup(u);

	if (problem)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s \"url\": %s", where, problem),
				 errhint("Give the service's base URL: http:// or https://, a host, and an optional path.")));
}

static int
parse_int_option(const OptionDef *def, const char *value, const char *where)
{
	char	   *end;
	long		v;

	errno = 0;
	v = strtol(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0' || v < def->min || v > def->max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s \"%s\": \"%s\" is not an integer between %d and %d",
						where, def->name, value, def->min, def->max)));
	return (int) v;
}

static bool
parse_bool_option(const OptionDef *def, const char *value, const char *where)
{
	bool		result;

	if (!parse_bool(value, &result))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s \"%s\": \"%s\" is not a boolean",
						where, def->name, value),
				 errhint("Use true or false.")));
	return result;
}

/*
 * Splits "a, b" into a list of field names, each a field of the service
 * (when it is known).
 */
static List *
parse_fields_option(const char *value, const ServiceDescriptor *service,
					const char *where)
{
	List	   *fields = NIL;
	char	   *copy = pstrdup(value);
	char	   *tok;
	char	   *save;

	for (tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save))
	{
		if (service != NULL && !service->is_field(tok))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid %s \"required_fields\": \"%s\" is not a field of the %s API",
							where, tok, service->label)));
		fields = lappend(fields, pstrdup(tok));
	}
	return fields;
}

/* The url without a trailing "/", unless the service says otherwise. */
static char *
base_url(const char *value, const ServiceDescriptor *service)
{
	char	   *url;
	size_t		len;

	if (service->base_url)
		return service->base_url(value);
	url = pstrdup(value);
	len = strlen(url);
	while (len > 0 && url[len - 1] == '/')
		url[--len] = '\0';
	return url;
}

/* Checks value as def's kind says. */
static void
check_option_value(const OptionDef *def, const char *value,
				   const ServiceDescriptor *service, const char *where)
{
	const char *choices = def->choices;

	switch (def->kind)
	{
		case OPT_URL:
			check_url(value, where);
			break;
		case OPT_INT:
			(void) parse_int_option(def, value, where);
			break;
		case OPT_BOOL:
			(void) parse_bool_option(def, value, where);
			break;
		case OPT_CHOICE:
			if (choices == NULL)	/* "service" */
				choices = service_names("|");
			if (!choice_is_valid(choices, value))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid %s \"%s\": \"%s\"", where, def->name, value),
						 errhint("Valid values are: %s.", choices_text(choices))));
			break;
		case OPT_STRING:
			if (strlen(value) < (size_t) def->min ||
				pg_mbstrlen(value) > def->max)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid %s \"%s\": the value must have between %d and %d characters",
								where, def->name, def->min, def->max)));
			break;
		case OPT_FIELDS:
			(void) parse_fields_option(value, service, where);
			break;
	}

	if (strcmp(def->name, "verify_tls") == 0 && !parse_bool_option(def, value, where) &&
		!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only a superuser may set \"verify_tls\" to false"),
				 errhint("Give the server's CA certificate with the ca_file option instead.")));
}

/*
 * Validates one option value and stores it in target.  where names the
 * option's origin in messages ("server option", ...).
 */
static void
apply_option(SyncTarget *target, const OptionDef *def, const char *value,
			 const char *where)
{
	const char *name = def->name;

	check_option_value(def, value, target->service, where);

	if (strcmp(name, "service") == 0)
		return;					/* target_from_server took it */
	else if (strcmp(name, "url") == 0)
		target->url = base_url(value, target->service);
	else if (strcmp(name, "connect_timeout_ms") == 0)
		target->connect_timeout_ms = parse_int_option(def, value, where);
	else if (strcmp(name, "timeout_ms") == 0)
		target->timeout_ms = parse_int_option(def, value, where);
	else if (strcmp(name, "concurrency") == 0)
		target->concurrency = parse_int_option(def, value, where);
	else if (strcmp(name, "max_attempts") == 0)
		target->max_attempts = parse_int_option(def, value, where);
	else if (strcmp(name, "retry_max_delay_s") == 0)
		target->retry_max_delay_s = parse_int_option(def, value, where);
	else if (strcmp(name, "max_rate") == 0)
		target->max_rate = parse_int_option(def, value, where);
	else if (strcmp(name, "ca_file") == 0)
		target->ca_file = pstrdup(value);
	else if (strcmp(name, "verify_tls") == 0)
		target->verify_tls = parse_bool_option(def, value, where);
	else if (strcmp(name, "skip_unchanged") == 0)
		target->skip_unchanged = parse_bool_option(def, value, where);
	else if (strcmp(name, "on_delete") == 0)
		target->on_delete_disable = (strcmp(value, "disable") == 0);
	else if (strcmp(name, "max_disables_per_hour") == 0)
		target->max_disables_per_hour = parse_int_option(def, value, where);
	else if (strcmp(name, "on_invalid") == 0)
		target->on_invalid_error = (strcmp(value, "error") == 0);
	else if (strcmp(name, "required_fields") == 0)
		target->required_fields = parse_fields_option(value, target->service, where);
	else
		target->service->set_option(target->options, name, value);
}

/*
 * An option this service does not take: another service's, a secret put
 * on the server, or no option at all.
 */
static void
report_unknown_option(const ServiceDescriptor *service, const char *name,
					  const char *where)
{
	const ServiceDescriptor *owner = service_declaring(name, false);

	if (owner != NULL && service != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("%s \"%s\" applies only to %s servers", where, name, owner->name)));
	if (service_declaring(name, true) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("invalid %s \"%s\"", where, name),
				 errhint("Secrets belong in a user mapping: CREATE USER MAPPING FOR PUBLIC SERVER ... OPTIONS (%s '...').",
						 name)));
	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
			 errmsg("invalid %s \"%s\"", where, name),
			 errhint("Valid %ss are: %s.", where, valid_server_option_names(service))));
}

static void
validate_server_options(List *options)
{
	ListCell   *lc;
	const ServiceDescriptor *service = NULL;
	bool		have_service = false;
	bool		have_url = false;

	foreach(lc, options)
	{
		DefElem    *d = lfirst(lc);

		if (strcmp(d->defname, "service") == 0)
		{
			check_option_value(find_in(server_options, "service"), defGetString(d),
							   NULL, "server option");
			service = service_find(defGetString(d));
			have_service = true;
		}
	}
	/* first: which options are valid depends on it */
	if (!have_service)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("a campus_sync server needs the option \"service\""),
				 errhint("Add OPTIONS (service '...', url '...'), where service is one of: %s.",
						 service_names(", "))));

	foreach(lc, options)
	{
		DefElem    *d = lfirst(lc);
		const OptionDef *def = find_server_option(service, d->defname);

		if (def == NULL)
			report_unknown_option(service, d->defname, "server option");
		check_option_value(def, defGetString(d), service, "server option");
		if (strcmp(d->defname, "url") == 0)
			have_url = true;
		if (is_disable_option(d->defname) && service->disable_body == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("server option \"%s\" cannot be set on a %s server", d->defname,
							service->name),
					 errdetail("%s", service->cannot_disable),
					 errhint("Remove the option; a DELETE on the person table sends nothing to this server.")));
	}

	if (!have_url)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("a campus_sync server needs the option \"url\""),
				 errhint("For example url '%s'.", service->example_url)));
}

/* "a", "a or b": the secrets service takes, for messages */
static char *
secret_names_text(const ServiceDescriptor *service)
{
	StringInfoData buf;
	const char *const *names = service->secret_options;

	initStringInfo(&buf);
	for (int n = 0; names[n]; n++)
		appendStringInfo(&buf, "%s%s", n == 0 ? "" : names[n + 1] ? ", " : " or ",
						 names[n]);
	return buf.data;
}

/* Every service's secrets: "api_token (opscom), auth_token or ..." */
static char *
valid_secret_names(void)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < service_count(); i++)
	{
		const ServiceDescriptor *service = service_at(i);

		appendStringInfo(&buf, "%s%s (%s)", i ? ", " : "",
						 secret_names_text(service), service->name);
	}
	return buf.data;
}

static void
validate_user_mapping_options(List *options)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *d = lfirst(lc);

		if (service_declaring(d->defname, true) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("invalid user mapping option \"%s\"", d->defname),
					 errhint("Valid user mapping options are: %s.", valid_secret_names())));
		if (defGetString(d)[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("user mapping option \"%s\" is empty", d->defname)));
	}
	for (int i = 0; i < service_count(); i++)
		if (service_at(i)->check_secrets)
			service_at(i)->check_secrets(options);
}

/*
 * campus_sync_fdw_validator
 *		Checks the options of the wrapper, its servers and user mappings at
 *		CREATE/ALTER time, so that mistakes surface there and not at the
 *		first sync.
 */
Datum
campus_sync_fdw_validator(PG_FUNCTION_ARGS)
{
	List	   *options = untransformRelOptions(PG_GETARG_DATUM(0));
	Oid			catalog = PG_GETARG_OID(1);

	if (catalog == ForeignServerRelationId)
		validate_server_options(options);
	else if (catalog == UserMappingRelationId)
		validate_user_mapping_options(options);
	else if (catalog == ForeignTableRelationId)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("campus_sync servers do not hold foreign tables"),
				 errhint("Use the functions in schema campus_sync to sync rows.")));
	else if (options != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("the campus_sync wrapper takes no options here"),
				 errhint("Put options on the server (CREATE SERVER ... OPTIONS) and secrets on a user mapping.")));
	PG_RETURN_VOID();
}

static Oid
campus_sync_fdw_oid(void)
{
	return get_foreign_data_wrapper_oid("campus_sync", false);
}

static void
target_defaults(SyncTarget *t)
{
	t->connect_timeout_ms = 5000;
	t->timeout_ms = 30000;
	t->concurrency = 8;
	t->max_attempts = 10;
	t->retry_max_delay_s = 600;
	t->verify_tls = true;
	t->skip_unchanged = true;
	t->max_disables_per_hour = DEFAULT_MAX_DISABLES_PER_HOUR;
}

static SyncTarget *
target_from_server(ForeignServer *server)
{
	SyncTarget *t = palloc0(sizeof(SyncTarget));
	ListCell   *lc;

	target_defaults(t);
	t->server_oid = server->serverid;
	t->server_name = pstrdup(server->servername);

	/* service first: required_fields is checked against it */
	foreach(lc, server->options)
	{
		DefElem    *d = lfirst(lc);

		if (strcmp(d->defname, "service") == 0)
			t->service = service_find(defGetString(d));
	}
	if (t->service == NULL)		/* the validator would not have let it be */
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("server \"%s\" has no valid option \"service\"", t->server_name),
				 errhint("ALTER SERVER %s OPTIONS (SET service '...'), where service is one of: %s.",
						 quote_identifier(t->server_name), service_names(", "))));
	t->options = palloc0(t->service->options_size);
	if (t->service->options_init)
		t->service->options_init(t->options);
	foreach(lc, server->options)
	{
		DefElem    *d = lfirst(lc);
		const OptionDef *def = find_server_option(t->service, d->defname);

		/* the validator has seen these already; skip what it would refuse */
		if (def != NULL)
			apply_option(t, def, defGetString(d), "server option");
	}
	return t;
}

/* A JSON scalar of the options argument as the string an option takes. */
static char *
call_option_string(JsonbValue *v, const char *name)
{
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		default:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid option \"%s\" in the options argument: the value must be a string, number or boolean",
							name)));
	}
	return NULL;				/* keep compiler quiet */
}

static void
apply_call_options(SyncTarget *t, Jsonb *options)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;

	if (!JB_ROOT_IS_OBJECT(options) || JB_ROOT_IS_SCALAR(options))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the options argument must be a JSON object"),
				 errhint("For example '{\"timeout_ms\": 2000}'.")));

	it = JsonbIteratorInit(&options->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		const OptionDef *def;

		if (tok == WJB_KEY)
		{
			key = pnstrdup(v.val.string.val, v.val.string.len);
			continue;
		}
		if (tok != WJB_VALUE)
			continue;

		if (strcmp(key, "force") == 0)
		{
			/* per call only: send even a body the target already has */
			static const OptionDef force = {"force", OPT_BOOL, 0, 0, NULL, true};

			t->skip_unchanged = !parse_bool_option(&force, call_option_string(&v, key),
												   "option");
			continue;
		}
		def = find_server_option(t->service, key);
		if (def == NULL && service_declaring(key, false) != NULL)
			report_unknown_option(t->service, key, "option");
		if (def == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("invalid option \"%s\" in the options argument", key),
					 errhint("Valid options are: force, %s.", valid_server_option_names(t->service))));
		if (!def->per_call)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("option \"%s\" cannot be given per call", key),
					 errdetail("The server decides where its secret is sent; change it with ALTER SERVER.")));
		if (strcmp(key, "ca_file") == 0 && !superuser())
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("only a superuser may give \"ca_file\" per call"),
					 errhint("Set it on the server with ALTER SERVER.")));
		apply_option(t, def, call_option_string(&v, key), "option");
	}
}

/*
 * target_load
 *		The target named server_name, with per-call options applied.
 *
 * Raises for configuration problems: no such server, a server of another
 * wrapper or service, no USAGE for check_usage_role (when valid).
 */
SyncTarget *
target_load(const char *server_name, Jsonb *call_options,
			const ServiceDescriptor *expected, Oid check_usage_role)
{
	ForeignServer *server = GetForeignServerByName(server_name, true);
	SyncTarget *t;

	if (server == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("server \"%s\" does not exist", server_name),
				 errhint("Create it with CREATE SERVER %s FOREIGN DATA WRAPPER campus_sync OPTIONS (service '%s', url '...').",
						 quote_identifier(server_name),
						 expected ? expected->name : "...")));
	if (server->fdwid != campus_sync_fdw_oid())
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("server \"%s\" does not belong to the campus_sync foreign-data wrapper",
						server_name)));
	if (OidIsValid(check_usage_role) &&
		cs_server_aclcheck(server->serverid, check_usage_role,
								   ACL_USAGE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for foreign server %s", server_name),
				 errdetail("Role \"%s\" needs USAGE on the server to send to it.",
						   GetUserNameFromId(check_usage_role, false)),
				 errhint("GRANT USAGE ON FOREIGN SERVER %s TO %s;",
						 quote_identifier(server_name),
						 quote_identifier(GetUserNameFromId(check_usage_role, false)))));

	t = target_from_server(server);
	if (expected != NULL && t->service != expected)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("server \"%s\" is a %s target, but this function sends to %s",
						server_name, t->service->name, expected->name),
				 errhint("Pass the name of a server with service '%s'.",
						 expected->name)));
	if (call_options != NULL)
		apply_call_options(t, call_options);
	return t;
}

/* The target of a server by OID (the delivery engine), no ACL check. */
SyncTarget *
target_load_oid(Oid server_oid)
{
	return target_from_server(GetForeignServer(server_oid));
}

/* The value of the option called name in a list of DefElem, or NULL. */
const char *
defelem_value(List *options, const char *name)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *d = lfirst(lc);

		if (strcmp(d->defname, name) == 0)
			return defGetString(d);
	}
	return NULL;
}

/*
 * target_secret
 *		The secret of the user mapping for roleid on the target's server,
 *		else of the PUBLIC mapping.  NULL only when missing_ok.
 */
TargetSecret *
target_secret(SyncTarget *target, Oid roleid, bool missing_ok)
{
	HeapTuple	tp;
	Form_pg_user_mapping um;
	Datum		datum;
	bool		isnull;
	List	   *options = NIL;
	TargetSecret *secret;
	const char *value;

	tp = SearchSysCache2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(roleid),
						 ObjectIdGetDatum(target->server_oid));
	if (!HeapTupleIsValid(tp))
		tp = SearchSysCache2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(InvalidOid),
							 ObjectIdGetDatum(target->server_oid));
	if (!HeapTupleIsValid(tp))
	{
		const char *rolename = OidIsValid(roleid) ?
			GetUserNameFromId(roleid, true) : "PUBLIC";

		if (!target->service->secret_required)
			return palloc0(sizeof(TargetSecret));	/* none: sent without */
		if (missing_ok)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("no user mapping for role \"%s\" on server \"%s\"",
						rolename ? rolename : "?", target->server_name),
				 errhint("CREATE USER MAPPING FOR PUBLIC SERVER %s OPTIONS (%s '...');",
						 quote_identifier(target->server_name),
						 target->service->secret_example)));
	}

	um = (Form_pg_user_mapping) GETSTRUCT(tp);
	datum = SysCacheGetAttr(USERMAPPINGUSERSERVER, tp,
							Anum_pg_user_mapping_umoptions, &isnull);
	if (!isnull)
		options = untransformRelOptions(datum);

	secret = palloc0(sizeof(TargetSecret));
	secret->umid = um->oid;
	ReleaseSysCache(tp);

	value = target->service->choose_secret(options, &secret->option);
	if (value == NULL && target->service->secret_required)
	{
		if (missing_ok)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("the user mapping for server \"%s\" has no %s",
						target->server_name, secret_names_text(target->service)),
				 errhint("ALTER USER MAPPING FOR ... SERVER %s OPTIONS (ADD %s '...');",
						 quote_identifier(target->server_name),
						 target->service->secret_example)));
	}
	secret->value = value ? pstrdup(value) : NULL;
	return secret;
}

/*
 * server_key_field(server oid) -> text
 *		The field a server's queue items are keyed by, as its service's
 *		rule says (the server_bindings view asks here: one source); NULL
 *		for no server of the campus_sync wrapper.
 */
Datum
campus_sync_server_key_field(PG_FUNCTION_ARGS)
{
	ForeignServer *server = GetForeignServerExtended(PG_GETARG_OID(0), FSV_MISSING_OK);

	if (server == NULL || server->fdwid != campus_sync_fdw_oid())
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(target_key_field(target_from_server(server))));
}

/* OIDs of every server of the campus_sync wrapper, in OID order. */
List *
target_all_servers(void)
{
	Oid			fdwid = campus_sync_fdw_oid();
	Relation	rel = table_open(ForeignServerRelationId, AccessShareLock);
	SysScanDesc scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	HeapTuple	tup;
	List	   *servers = NIL;

	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_foreign_server srv = (Form_pg_foreign_server) GETSTRUCT(tup);

		if (srv->srvfdw == fdwid)
			servers = lappend_oid(servers, srv->oid);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	list_sort(servers, list_oid_cmp);
	return servers;
}
