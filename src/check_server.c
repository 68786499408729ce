/*-------------------------------------------------------------------------
 *
 * check_server.c
 *	  check_server(server): the first thing to run after CREATE SERVER.
 *	  Proves, for each server, that the url answers, TLS verifies and the
 *	  credentials of the caller's user mapping are accepted, and changes
 *	  nothing at the remote (each service's protocol says how).  What is
 *	  wrong is a row, not an error: one bad server does not hide the
 *	  others.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_foreign_server.h"
#include "foreign/foreign.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"

#include "compat.h"
#include "request_service.h"
#include "target.h"

PG_FUNCTION_INFO_V1(campus_sync_check_server);

static void
check_one(ReturnSetInfo *rsinfo, const char *server_name)
{
	SyncTarget *target = target_load(server_name, NULL, NULL, GetUserId());
	TargetSecret *secret = target_secret(target, GetUserId(), true);
	ServerCheck check = {0};
	Datum		values[5];
	bool		nulls[5] = {0};

	if (secret == NULL)
	{
		check.detail = psprintf("no user mapping for role \"%s\" or PUBLIC on server \"%s\"",
								GetUserNameFromId(GetUserId(), false), server_name);
		check.hint = psprintf("CREATE USER MAPPING FOR %s SERVER %s OPTIONS (...);",
							  quote_identifier(GetUserNameFromId(GetUserId(), false)),
							  quote_identifier(server_name));
	}
	else
		target->service->check(target, secret, &check);

	values[0] = DirectFunctionCall1(namein, CStringGetDatum(server_name));
	values[1] = BoolGetDatum(check.ok);
	values[2] = Int32GetDatum(check.http_status);
	nulls[2] = check.http_status == 0;
	values[3] = CStringGetTextDatum(check.detail);
	values[4] = check.hint ? CStringGetTextDatum(check.hint) : (Datum) 0;
	nulls[4] = check.hint == NULL;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * check_server(server name DEFAULT NULL)
 *		-> (server, ok, http_status, detail, hint)
 *		One row for the server, or for every campus_sync server the caller
 *		has USAGE on.
 */
Datum
campus_sync_check_server(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	if (!PG_ARGISNULL(0))
	{
		check_one(rsinfo, NameStr(*PG_GETARG_NAME(0)));
		return (Datum) 0;
	}
	foreach(lc, target_all_servers())
	{
		ForeignServer *server = GetForeignServer(lfirst_oid(lc));

		if (cs_server_aclcheck(server->serverid, GetUserId(), ACL_USAGE) == ACLCHECK_OK)
			check_one(rsinfo, server->servername);
	}
	return (Datum) 0;
}
