/*-------------------------------------------------------------------------
 *
 * pause.c
 *	  Is a target paused?  campus_sync.pause(server) keeps a row in
 *	  campus_sync.paused_servers until resume(server): while it is there
 *	  the server queues but sends nothing (the delivery engine claims
 *	  nothing for it; the push functions refuse it).  For a vendor's
 *	  maintenance window.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "pause.h"

/*
 * server_pause_text
 *		NULL when the server is not paused; else "since <time> by
 *		<role>[: <reason>]" for messages.  Read directly, not through SQL:
 *		a push function runs as its caller, who may not read the table.
 */
char *
server_pause_text(Oid server_oid)
{
	Oid			schema = get_namespace_oid("campus_sync", true);
	Oid			relid;
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	char	   *description = NULL;

	/* SQL objects older than 0.5 (before ALTER EXTENSION UPDATE): no pauses */
	if (!OidIsValid(schema) ||
		!OidIsValid(relid = get_relname_relid("paused_servers", schema)))
		return NULL;

	rel = table_open(relid, AccessShareLock);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(server_oid));
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &key);
	if (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		TupleDesc	desc = RelationGetDescr(rel);
		bool		isnull;
		Datum		at = heap_getattr(tup, 2, desc, &isnull);
		Datum		by = heap_getattr(tup, 3, desc, &isnull);
		Datum		reason = heap_getattr(tup, 4, desc, &isnull);

		description = psprintf("since %s by %s%s%s",
						timestamptz_to_str(DatumGetTimestampTz(at)),
						TextDatumGetCString(by),
						isnull ? "" : ": ",
						isnull ? "" : TextDatumGetCString(reason));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return description;
}

/* Raises when the server is paused: the push functions send nothing then. */
void
check_not_paused(Oid server_oid, const char *server_name)
{
	char	   *paused = server_pause_text(server_oid);

	if (paused != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("server \"%s\" is paused", server_name),
				 errdetail("Paused %s.", paused),
				 errhint("SELECT campus_sync.resume(%s); or queue the person with enqueue(), which sends once the server is resumed.",
						 quote_literal_cstr(server_name))));
}
