/*-------------------------------------------------------------------------
 *
 * push.c
 *	  What the synchronous SQL functions of every service share (each
 *	  service's own file defines its functions with these): the payload
 *	  preview, the push now, in this backend, and a look-up's failure; and
 *	  payload() and push(), the same for a server of any service.
 *
 *	  A push (opscom_push, cloudcard_upsert) never raises for a problem of
 *	  the row or of the remote: it returns ok = false and a readable
 *	  error, so that one SELECT can run it over a whole table.
 *	  Configuration problems (no server, no USAGE, no user mapping) raise.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "payload.h"
#include "pause.h"
#include "push.h"
#include "request.h"
#include "response.h"
#include "row_plan.h"
#include "sync_state.h"

PG_FUNCTION_INFO_V1(campus_sync_payload);
PG_FUNCTION_INFO_V1(campus_sync_push);

#define ARG_PERSON 0
#define ARG_MAPPING 1
#define ARG_SERVER 2
#define ARG_OPTIONS 3

static Jsonb *
jsonb_arg(FunctionCallInfo fcinfo, int argno)
{
	if (PG_NARGS() <= argno || PG_ARGISNULL(argno))
		return NULL;
	return PG_GETARG_JSONB_P(argno);
}

/* The plan of the call's row, mapping, server and (has_options) options. */
RowPlan *
push_plan_for_call(FunctionCallInfo fcinfo, const ServiceDescriptor *service,
				   bool has_options)
{
	return row_plan_get(fcinfo, PG_GETARG_HEAPTUPLEHEADER(ARG_PERSON),
						server_arg(fcinfo, ARG_SERVER),
						jsonb_arg(fcinfo, ARG_MAPPING),
						has_options ? jsonb_arg(fcinfo, ARG_OPTIONS) : NULL,
						service);
}

/* The body a row would send, secrets left out; raises if it is invalid. */
Datum
push_preview(FunctionCallInfo fcinfo, const ServiceDescriptor *service)
{
	RowPlan    *plan;
	Payload		payload;

	if (PG_ARGISNULL(ARG_PERSON))
		PG_RETURN_NULL();
	plan = push_plan_for_call(fcinfo, service, true);
	row_plan_build(plan, PG_GETARG_HEAPTUPLEHEADER(ARG_PERSON), &payload);
	if (payload.error)
		payload_raise(payload.error);
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(payload.body)));
}

/* A campus_sync.push_result row. */
static Datum
push_result(FunctionCallInfo fcinfo, bool ok, int http_status,
			const char *remote_id, const char *response, const char *error,
			double elapsed_ms)
{
	TupleDesc	desc;
	Datum		values[6];
	bool		nulls[6] = {0};
	Jsonb	   *jb = response_jsonb(response);

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("function returning campus_sync.push_result called in a context that cannot accept it")));
	desc = BlessTupleDesc(desc);

	values[0] = BoolGetDatum(ok);
	values[1] = Int32GetDatum(http_status);
	nulls[1] = http_status == 0;
	values[2] = remote_id ? CStringGetTextDatum(remote_id) : (Datum) 0;
	nulls[2] = remote_id == NULL;
	values[3] = jb ? JsonbPGetDatum(jb) : (Datum) 0;
	nulls[3] = jb == NULL;
	values[4] = error ? CStringGetTextDatum(error) : (Datum) 0;
	nulls[4] = error == NULL;
	values[5] = Float8GetDatum(elapsed_ms);
	return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
}

/*
 * SELECT (campus_sync.opscom_push(p)).* FROM people p -- the way SPEC.md
 * shows it -- makes PostgreSQL call the function once per result column,
 * each time for the same row.  The last push is remembered for as long as
 * the memory context it was called in (the executor's per-row context)
 * lives, so those repeats get its result instead of sending again.  A new
 * row, statement or PL/pgSQL expression evaluation starts afresh.
 */
typedef struct LastPush
{
	MemoryContext context;		/* NULL: nothing remembered */
	Oid			server_oid;
	char	   *body;			/* in context */
	Datum		result;			/* in context */
} LastPush;

static LastPush last_push;

static void
forget_last_push(void *arg)
{
	(void) arg;
	last_push.context = NULL;
}

static bool
is_repeat_push(SyncTarget *target, const char *body)
{
	return last_push.context == CurrentMemoryContext &&
		last_push.server_oid == target->server_oid &&
		strcmp(last_push.body, body) == 0;
}

static void
remember_push(SyncTarget *target, const char *body, Datum result)
{
	MemoryContextCallback *cb;

	if (last_push.context == CurrentMemoryContext)
		cb = NULL;				/* its callback is registered already */
	else
	{
		cb = palloc(sizeof(MemoryContextCallback));
		cb->func = forget_last_push;
		cb->arg = NULL;
	}
	last_push.server_oid = target->server_oid;
	last_push.body = pstrdup(body);
	last_push.result = result;
	if (cb)
		MemoryContextRegisterResetCallback(CurrentMemoryContext, cb);
	last_push.context = CurrentMemoryContext;
}

/*
 * The target has this body already (the delivered-state memory says so):
 * ok, nothing sent, and the response says so.
 */
static Datum
unchanged_result(FunctionCallInfo fcinfo, DeliveredState *state)
{
	char	   *response = psprintf("{\"unchanged\": true, \"delivered_at\": \"%s\"}",
									timestamptz_to_str(state->delivered_at));

	return push_result(fcinfo, true, 0, state->remote_id, response, NULL, 0);
}

/* The memory learns what the target now has. */
static void
remember_delivery(SyncTarget *target, const char *person_key, const uint8 *hash,
				  const char *remote_id)
{
	DeliveredBatch *batch = delivered_batch_create(target->server_oid, CurrentMemoryContext);

	delivered_batch_add(batch, person_key, hash, remote_id);
	delivered_batch_save(batch);
}

/* Sends one row now and waits; see the file header for what raises. */
Datum
push_now(FunctionCallInfo fcinfo, const ServiceDescriptor *service)
{
	RowPlan    *plan;
	TargetSecret *secret;
	Payload		payload;
	SyncJob		job;
	Datum		result;
	uint8		hash[BODY_HASH_LEN];
	DeliveredState state;

	if (PG_ARGISNULL(ARG_PERSON))
		PG_RETURN_NULL();
	plan = push_plan_for_call(fcinfo, service, true);
	check_not_paused(plan->target->server_oid, plan->target->server_name);
	secret = target_secret(plan->target, GetUserId(), false);

	row_plan_build(plan, PG_GETARG_HEAPTUPLEHEADER(ARG_PERSON), &payload);
	if (payload.error)
		return push_result(fcinfo, false, 0, NULL, NULL,
						   payload_error_text(payload.error), 0);
	if (is_repeat_push(plan->target, payload.body))
		return last_push.result;

	body_hash(plan->target, payload.body, hash);
	if (plan->target->skip_unchanged &&
		delivered_unchanged(plan->target, payload.person_key, hash, &state))
		result = unchanged_result(fcinfo, &state);
	else
	{
		job_init(&job, JOB_PUSH, plan->target, secret, payload.body, payload.person_key);
		job_run(&job);
		if (job.outcome == JOB_OK)
			remember_delivery(plan->target, payload.person_key, hash, job.remote_id);
		result = push_result(fcinfo, job.outcome == JOB_OK, job.http_status,
							 job.remote_id, job.response, job.error, job.elapsed_ms);
	}
	remember_push(plan->target, payload.body, result);
	return result;
}

/* payload(person, mapping, server, options): the body for any service */
Datum
campus_sync_payload(PG_FUNCTION_ARGS)
{
	return push_preview(fcinfo, NULL);
}

/* push(person, mapping, server, options): sends to any service now */
Datum
campus_sync_push(PG_FUNCTION_ARGS)
{
	return push_now(fcinfo, NULL);
}

/*
 * The call's row as one job of the given kind (a look-up's, a login
 * link's): its server must not be paused, the caller needs a user mapping,
 * an invalid row raises.  The job is initialised, not started.
 */
void
push_job_for_call(FunctionCallInfo fcinfo, const ServiceDescriptor *service, JobKind kind,
				  SyncJob *job)
{
	RowPlan    *plan = push_plan_for_call(fcinfo, service, false);
	TargetSecret *secret;
	Payload		payload;

	check_not_paused(plan->target->server_oid, plan->target->server_name);
	secret = target_secret(plan->target, GetUserId(), false);
	row_plan_build(plan, PG_GETARG_HEAPTUPLEHEADER(ARG_PERSON), &payload);
	if (payload.error)
		payload_raise(payload.error);
	job_init(job, kind, plan->target, secret, payload.body, payload.person_key);
}

/* A look-up failed: raise, saying what could not be done and why. */
void
push_raise_job_failure(SyncJob *job, const char *what)
{
	ereport(ERROR,
			(errcode(job->transport_error ? ERRCODE_CONNECTION_FAILURE : ERRCODE_FDW_ERROR),
			 errmsg("could not %s", what),
			 errdetail("%s", job->error)));
	pg_unreachable();
}
