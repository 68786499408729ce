/*-------------------------------------------------------------------------
 *
 * service_webhook.c
 *	  A webhook as a service: the mapped row, as a JSON object, POSTed to
 *	  the server's url, with the queue, retries and status of any service.
 *
 *	  Every column is a field, under its own name or the one a mapping
 *	  gives it ({"field": "column"}; null leaves a field out), in the
 *	  row's column order.  Values follow the rules of every body (NULL is
 *	  left out, dates are yyyy-mm-dd, NaN refused), typed as JSON: booleans
 *	  and numbers as such, json and jsonb columns nested, the rest strings.
 *	  The server option key_field (default "id") names the field that says
 *	  who the row is: items of one person coalesce in the queue.
 *
 *	  A user mapping is optional.  With signing_secret, each request has
 *	  X-Signature: sha256=<hex HMAC-SHA256 of the body, keyed by the
 *	  secret>, the convention of GitHub's and Stripe's webhooks, so the
 *	  receiver can tell a delivery from a forgery.  Any 2xx is success;
 *	  408, 425, 429 and 5xx are retried.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/hmac.h"
#include "common/sha2.h"

#include "payload.h"
#include "request_service.h"

/* Longer keys would not fit the queue's index; CloudCard's limit too. */
#define WEBHOOK_KEY_MAX_CHARS 255

typedef struct WebhookOptions
{
	char	   *key_field;
} WebhookOptions;

/* One field of the body and the column that feeds it. */
typedef struct WebhookField
{
	char	   *name;
	SourceColumn *column;
} WebhookField;

typedef struct WebhookPlan
{
	PayloadPlan base;
	int			nfields;
	WebhookField *fields;		/* in the row's column order */
} WebhookPlan;

extern const ServiceDescriptor webhook_service;

static const OptionDef webhook_server_options[] = {
	{"key_field", OPT_STRING, 1, NAMEDATALEN - 1, NULL, false},
	{NULL}
};

static const char *const webhook_secrets[] = {"signing_secret", NULL};

static void
webhook_options_init(void *options)
{
	((WebhookOptions *) options)->key_field = "id";
}

static void
webhook_set_option(void *options, const char *name, const char *value)
{
	if (strcmp(name, "key_field") == 0)
		((WebhookOptions *) options)->key_field = pstrdup(value);
}

/* The url as given: a webhook's path is the receiver's to choose. */
static char *
webhook_base_url(const char *url)
{
	return pstrdup(url);
}

static const char *
webhook_choose_secret(List *options, const char **option)
{
	*option = "signing_secret";
	return defelem_value(options, "signing_secret");
}

static const char *
webhook_key_field(SyncTarget *target)
{
	return ((WebhookOptions *) target->options)->key_field;
}

/* Any name can be a field of a webhook's body. */
static bool
webhook_is_field(const char *name)
{
	return name[0] != '\0';
}

static void
add_field(WebhookPlan *plan, const char *name, TupleDesc desc, int attno)
{
	WebhookField *f = &plan->fields[plan->nfields++];

	f->name = pstrdup(name);
	f->column = palloc0(sizeof(SourceColumn));
	column_ref_init(f->column, desc, attno);
}

/*
 * A column is sent under the field names the mapping gives it, else under
 * its own name unless the mapping takes that name (for another column, or
 * null: not sent).
 */
static PayloadPlan *
webhook_plan_create(SyncTarget *target, TupleDesc desc, List *mapping)
{
	WebhookPlan *plan = palloc0(sizeof(WebhookPlan));
	ListCell   *lc;

	(void) target;				/* payload_plan_create sets plan->target */
	foreach(lc, mapping)
	{
		MappingEntry *e = lfirst(lc);

		if (e->column != NULL && row_find_column(desc, e->column) < 0)
			(void) column_for_field(desc, mapping, e->field, NULL, "webhook");	/* raises */
	}
	plan->fields = palloc0(sizeof(WebhookField) * (desc->natts + list_length(mapping)));
	for (int attno = 0; attno < desc->natts; attno++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, attno);
		const char *colname = NameStr(att->attname);
		bool		mapped = false;

		if (att->attisdropped)
			continue;
		foreach(lc, mapping)
		{
			MappingEntry *e = lfirst(lc);

			if (e->column != NULL && strcmp(e->column, colname) == 0)
			{
				add_field(plan, e->field, desc, attno);
				mapped = true;
			}
		}
		if (!mapped && mapping_find(mapping, colname) == NULL)
			add_field(plan, colname, desc, attno);
	}
	return &plan->base;
}

static int *
webhook_source_columns(PayloadPlan *base, int *n)
{
	WebhookPlan *plan = (WebhookPlan *) base;
	int		   *columns = palloc(sizeof(int) * (plan->nfields + 1));

	*n = 0;
	for (int i = 0; i < plan->nfields; i++)
		add_source_column(columns, n, plan->fields[i].column);
	return columns;
}

/* Is the value the column gives already a JSON value (not a string)? */
static bool
is_json_literal(SourceColumn *col)
{
	switch (col->typid)
	{
		case BOOLOID:
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case NUMERICOID:
		case FLOAT4OID:
		case FLOAT8OID:
		case JSONOID:
		case JSONBOID:
			return true;
		default:
			return false;
	}
}

static void
webhook_build(PayloadPlan *base, RowValues *row, Payload *out)
{
	WebhookPlan *plan = (WebhookPlan *) base;
	const char *key_field = webhook_key_field(base->target);
	char	  **values = palloc0(sizeof(char *) * (plan->nfields + 1));
	SourceColumn *key_column = NULL;
	StringInfoData buf;
	bool		first = true;
	ListCell   *lc;

	for (int i = 0; i < plan->nfields; i++)
	{
		WebhookField *f = &plan->fields[i];
		PayloadError *e = NULL;

		if (strcmp(f->name, key_field) == 0)
			key_column = f->column;
		if (row->nulls[f->column->attno])
			continue;
		values[i] = column_value_text(f->column, row->values[f->column->attno],
									  "webhook", f->name, &e);
		if (e == NULL && strcmp(f->name, key_field) == 0)
		{
			e = check_max_length("webhook", f->name, f->column, values[i],
								 WEBHOOK_KEY_MAX_CHARS);
			if (e == NULL && values[i][0] != '\0')
				out->person_key = values[i];
		}
		if (e != NULL)
		{
			out->error = e;
			return;
		}
	}
	if (out->person_key == NULL)
	{
		out->error = missing_field_error("webhook", key_field, key_column,
										 psprintf("The server's key_field option names the field that says who a row is (now \"%s\"); map a column to it or set key_field: ALTER SERVER ... OPTIONS (ADD key_field '...').",
												  key_field));
		return;
	}
	foreach(lc, base->target->required_fields)
	{
		const char *name = lfirst(lc);
		bool		present = false;

		for (int i = 0; i < plan->nfields; i++)
			if (strcmp(plan->fields[i].name, name) == 0 && values[i] != NULL &&
				values[i][0] != '\0')
				present = true;
		if (!present)
		{
			out->error = missing_field_error("webhook", name, NULL,
											 "The server option required_fields lists it.");
			return;
		}
	}

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int i = 0; i < plan->nfields; i++)
	{
		if (values[i] == NULL)
			continue;
		if (is_json_literal(plan->fields[i].column))
			json_add_raw(&buf, &first, plan->fields[i].name, values[i]);
		else
			json_add_string(&buf, &first, plan->fields[i].name, values[i]);
	}
	appendStringInfoChar(&buf, '}');
	out->body = buf.data;
}

/* "sha256=<hex>" of body, keyed by secret. */
static char *
signature(const char *secret, const char *body)
{
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char	   *result;
	bool		ok;

	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	ok = pg_hmac_init(ctx, (const uint8 *) secret, strlen(secret)) == 0 &&
		pg_hmac_update(ctx, (const uint8 *) body, strlen(body)) == 0 &&
		pg_hmac_final(ctx, digest, sizeof(digest)) == 0;
	pg_hmac_free(ctx);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not sign a webhook body with HMAC-SHA256")));
	result = palloc(sizeof("X-Signature: sha256=") + 2 * sizeof(digest));
	strcpy(result, "X-Signature: sha256=");
	for (int i = 0; i < (int) sizeof(digest); i++)
		sprintf(result + strlen("X-Signature: sha256=") + 2 * i, "%02x", digest[i]);
	explicit_bzero(digest, sizeof(digest));
	return result;
}

static bool
webhook_prepare(SyncJob *job, JobRequest *req)
{
	req->url = pstrdup(job->target->url);
	if (job->kind == JOB_LOOKUP)
	{
		/* check_server(): a GET proves the url answers, and sends nothing */
		req->method = "GET";
		return true;
	}
	if (job->kind != JOB_PUSH)
		elog(ERROR, "a webhook has no job of kind %d", (int) job->kind);
	/* signed as sent: the UTF-8 bytes */
	req->body = job_wire_body(pstrdup(job->payload));
	req->body_is_wire = true;
	if (job->secret->value != NULL)
		req->header = signature(job->secret->value, req->body);
	return true;
}

static void
webhook_judge(SyncJob *job, ResponseInfo *info, const char *location)
{
	int			status = job->http_status;
	JobOutcome	failed = is_temporary_http_status(status) ? JOB_TEMPORARY : JOB_PERMANENT;

	if (status >= 200 && status < 300)
	{
		job->remote_id = info->id;
		job_finish(job, JOB_OK, NULL);
	}
	else if (job->kind == JOB_LOOKUP && failed == JOB_PERMANENT)
		job_finish(job, JOB_OK, NULL);	/* it answered: all a GET can show */
	else
		job_finish(job, failed,
				   job_http_error(job, "", info, failed == JOB_TEMPORARY ? NULL : location));
}

/*
 * check_server(): a GET of the url.  Any answer but a 5xx shows that it
 * is reachable and that TLS verifies; a receiver that takes only POST says
 * 404 or 405, and that is fine.  Nothing is delivered, so the signing
 * secret cannot be checked.
 */
static void
webhook_check(SyncTarget *target, TargetSecret *secret, ServerCheck *out)
{
	SyncJob		job;

	job_init(&job, JOB_LOOKUP, target, secret, NULL, NULL);
	job_run(&job);
	out->ok = job.outcome == JOB_OK;
	out->http_status = job.http_status;
	if (out->ok)
		out->detail = psprintf("the url answered HTTP %d to GET (webhooks are sent with POST); %s",
							   job.http_status,
							   secret->value ? "the signing secret is used but cannot be checked without a delivery" :
							   "no signing_secret: deliveries are not signed");
	else
	{
		out->detail = job.error;
		if (job.transport_error)
			out->hint = check_hint_transport();
	}
}

const ServiceDescriptor webhook_service = {
	.name = "webhook",
	.label = "webhook",
	.example_url = "https://hooks.example.edu/people",

	.options = webhook_server_options,
	.options_size = sizeof(WebhookOptions),
	.options_init = webhook_options_init,
	.set_option = webhook_set_option,
	.base_url = webhook_base_url,

	.secret_options = webhook_secrets,
	.choose_secret = webhook_choose_secret,
	.secret_required = false,
	.secret_example = "signing_secret",

	.key_field = webhook_key_field,
	.cannot_disable = "A webhook receives the rows written; it is sent nothing for a DELETE.",
	.example_field = "id",
	.is_field = webhook_is_field,
	.plan_create = webhook_plan_create,
	.build = webhook_build,
	.source_columns = webhook_source_columns,

	.prepare = webhook_prepare,
	.judge = webhook_judge,
	.check = webhook_check,
};
