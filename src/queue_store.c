/*-------------------------------------------------------------------------
 *
 * queue_store.c
 *	  Puts a person on the queue, in the caller's transaction, without SPI:
 *	  this runs in every sync trigger, so it reads and writes
 *	  campus_sync.queue_items the way logical replication's apply worker
 *	  does (an index scan, table_tuple_lock, ExecSimpleRelationInsert).
 *
 *	  Coalescing: a person (server, person_key) has at most one waiting
 *	  item that no deliverer holds.  A new payload replaces that item's,
 *	  unless a deliverer has it locked (it is being sent): then a new item
 *	  is queued behind it.  Two transactions queueing the same person are
 *	  serialized: the second waits for the first to end, so that items of a
 *	  person are queued -- and delivered -- in commit order.  Only waiting
 *	  items written by another enqueuer are waited for, never a deliverer.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation_d.h"
#include "commands/sequence.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "queue_store.h"

static const char *const queue_column_names[N_QUEUE_COLUMNS] = {
	"id", "server", "person_key", "state", "payload", "enqueued_by", "attempts",
	"next_attempt_at", "last_http_status", "last_error", "remote_id",
	"enqueued_at", "delivered_at"
};

/* How often a changing candidate is looked up again before giving up. */
#define MAX_LOOKUPS 5

Oid
queue_relation_oid(const char *relname)
{
	Oid			nsp = get_namespace_oid("campus_sync", false);
	Oid			relid = get_relname_relid(relname, nsp);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation campus_sync.%s does not exist", relname),
				 errhint("The campus_sync extension is not installed correctly; try ALTER EXTENSION campus_sync UPDATE.")));
	return relid;
}

QueueStore *
queue_store_open(void)
{
	QueueStore *store = palloc0(sizeof(QueueStore));
	TupleDesc	desc;
	RangeTblEntry *rte;

	store->rel = table_open(queue_relation_oid("queue_items"), RowExclusiveLock);
	store->key_index = index_open(queue_relation_oid("queue_items_key"), RowExclusiveLock);
	store->due_index = index_open(queue_relation_oid("queue_items_due"), RowExclusiveLock);
	store->seq_oid = queue_relation_oid("queue_items_id_seq");

	desc = RelationGetDescr(store->rel);
	for (int c = 0; c < N_QUEUE_COLUMNS; c++)
	{
		store->attnum[c] = InvalidAttrNumber;
		for (int i = 0; i < desc->natts; i++)
			if (!TupleDescAttr(desc, i)->attisdropped &&
				strcmp(NameStr(TupleDescAttr(desc, i)->attname), queue_column_names[c]) == 0)
				store->attnum[c] = i + 1;
		if (store->attnum[c] == InvalidAttrNumber)
			elog(ERROR, "campus_sync.queue_items has no column \"%s\"", queue_column_names[c]);
	}

	/* an executor state for constraints and index maintenance */
	store->estate = CreateExecutorState();
	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(store->rel);
	rte->relkind = store->rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	ExecInitRangeTable(store->estate, list_make1(rte));
	store->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(store->rri, store->rel, 1, NULL, 0);
	store->estate->es_opened_result_relations = list_make1(store->rri);
	store->estate->es_output_cid = GetCurrentCommandId(true);
	if (ActiveSnapshotSet())
		store->estate->es_snapshot = GetActiveSnapshot();
	ExecOpenIndices(store->rri, false);

	store->found = table_slot_create(store->rel, &store->estate->es_tupleTable);
	store->probe = table_slot_create(store->rel, &store->estate->es_tupleTable);
	store->row = table_slot_create(store->rel, &store->estate->es_tupleTable);
	return store;
}

void
queue_store_close(QueueStore *store)
{
	ExecCloseIndices(store->rri);
	ExecResetTupleTable(store->estate->es_tupleTable, false);
	FreeExecutorState(store->estate);
	index_close(store->key_index, NoLock);
	index_close(store->due_index, NoLock);
	table_close(store->rel, NoLock);
	pfree(store);
}

void
text_or_null(QueueStore *store, QueueColumn col, const char *s)
{
	if (s == NULL)
		ROW_SET_NULL(store, col);
	else
		ROW_SET(store, col, CStringGetTextDatum(s));
}

Datum
name_datum(const char *s)
{
	Name		n = palloc0(NAMEDATALEN);

	namestrcpy(n, s);
	return NameGetDatum(n);
}

char *
found_text(QueueStore *store, QueueColumn col)
{
	bool		isnull;
	Datum		d = slot_getattr(store->found, store->attnum[col], &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

int64
found_int64(QueueStore *store, QueueColumn col)
{
	bool		isnull;

	return DatumGetInt64(slot_getattr(store->found, store->attnum[col], &isnull));
}

/* Starts the row to write from the tuple read. */
void
copy_found_to_row(QueueStore *store)
{
	TupleTableSlot *row = store->row;
	int			natts = row->tts_tupleDescriptor->natts;

	slot_getallattrs(store->found);
	ExecClearTuple(row);
	memcpy(row->tts_values, store->found->tts_values, sizeof(Datum) * natts);
	memcpy(row->tts_isnull, store->found->tts_isnull, sizeof(bool) * natts);
}

/* Writes the row over the tuple at tid, which this transaction has locked. */
void
update_row(QueueStore *store, ItemPointer tid)
{
	bool		update_indexes;

	ExecStoreVirtualTuple(store->row);
	ExecConstraints(store->rri, store->row, store->estate);
	simple_table_tuple_update(store->rel, tid, store->row, store->estate->es_snapshot,
							  &update_indexes);
	if (update_indexes)
		ExecInsertIndexTuples(store->rri, store->row, store->estate, true, false, NULL, NIL);
}

/* Scan keys of the key index for one person: (server, person_key). */
void
person_scan_keys(ScanKey keys, const char *server, const char *key)
{
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_NAMEEQ, name_datum(server));
	ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid,
						   C_COLLATION_OID, F_TEXTEQ, CStringGetTextDatum(key));
}

/* The state the payload puts the item in: pending, or invalid. */
static const char *
payload_state(Payload *payload)
{
	return payload->body ? "pending" : "invalid";
}

/*
 * Looks for the person's newest waiting item that nobody else is
 * changing.  Returns false after waiting for another enqueuer's
 * transaction (the caller looks again).  *tid is invalid when there is
 * no candidate.
 */
static bool
find_candidate(QueueStore *store, const char *server, const char *key,
			   ItemPointer tid, char **state)
{
	SnapshotData dirty;
	IndexScanDesc scan;
	ScanKeyData keys[2];
	int64		best_id = -1;
	TransactionId wait_for = InvalidTransactionId;

	ItemPointerSetInvalid(tid);
	InitDirtySnapshot(dirty);
	person_scan_keys(keys, server, key);

	scan = index_beginscan(store->rel, store->key_index, &dirty, 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, store->found))
	{
		char	   *found_state = found_text(store, COL_STATE);
		int64		id;

		/* written by a transaction still in progress (not ours) */
		if (TransactionIdIsValid(dirty.xmin))
		{
			if (strcmp(found_state, "pending") == 0)
			{
				wait_for = dirty.xmin;	/* another enqueuer: wait for it */
				break;
			}
			continue;			/* a deliverer's result: not ours to take */
		}
		if (TransactionIdIsValid(dirty.xmax))
			continue;			/* being changed by someone else */

		id = found_int64(store, COL_ID);
		if (id > best_id)
		{
			best_id = id;
			ItemPointerCopy(&store->found->tts_tid, tid);
			*state = found_state;
		}
	}
	index_endscan(scan);

	if (TransactionIdIsValid(wait_for))
	{
		XactLockTableWait(wait_for, store->rel, NULL, XLTW_None);
		return false;
	}
	return true;
}

/* Replaces the locked item's payload (or error); returns its id. */
static int64
replace_item(QueueStore *store, Payload *payload, Datum enqueued_by)
{
	ItemPointerData tid = store->found->tts_tid;

	copy_found_to_row(store);
	ROW_SET(store, COL_STATE, CStringGetTextDatum(payload_state(payload)));
	text_or_null(store, COL_PAYLOAD, payload->body);
	ROW_SET(store, COL_ENQUEUED_BY, enqueued_by);
	if (payload->body)
	{
		/* a new state of the person: its attempts start over */
		ROW_SET(store, COL_ATTEMPTS, Int32GetDatum(0));
		ROW_SET_NULL(store, COL_LAST_ERROR);
	}
	else
		text_or_null(store, COL_LAST_ERROR, payload_error_text(payload->error));
	update_row(store, &tid);
	return found_int64(store, COL_ID);
}

static int64
insert_item(QueueStore *store, const char *server, Payload *payload, Datum enqueued_by)
{
	TupleTableSlot *row = store->row;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	int64		id = nextval_internal(store->seq_oid, false);

	ExecClearTuple(row);
	for (int i = 0; i < row->tts_tupleDescriptor->natts; i++)
		row->tts_isnull[i] = true;
	ROW_SET(store, COL_ID, Int64GetDatum(id));
	ROW_SET(store, COL_SERVER, name_datum(server));
	text_or_null(store, COL_PERSON_KEY, payload->person_key);
	ROW_SET(store, COL_STATE, CStringGetTextDatum(payload_state(payload)));
	text_or_null(store, COL_PAYLOAD, payload->body);
	ROW_SET(store, COL_ENQUEUED_BY, enqueued_by);
	ROW_SET(store, COL_ATTEMPTS, Int32GetDatum(0));
	ROW_SET(store, COL_NEXT_ATTEMPT_AT, TimestampTzGetDatum(now));
	if (payload->error)
		text_or_null(store, COL_LAST_ERROR, payload_error_text(payload->error));
	ROW_SET(store, COL_ENQUEUED_AT, TimestampTzGetDatum(now));
	ExecStoreVirtualTuple(row);

	ExecSimpleRelationInsert(store->rri, store->estate, row);
	return id;
}

/*
 * queue_store_put
 *		Queues a payload (or, when it is invalid, its error) for server.
 *		Returns the id of the item that carries it.
 */
int64
queue_store_put(QueueStore *store, const char *server, Payload *payload)
{
	Datum		enqueued_by = name_datum(GetUserNameFromId(GetUserId(), false));
	int64		id = -1;

	/* earlier items of this transaction become visible to table_tuple_lock */
	CommandCounterIncrement();
	store->estate->es_output_cid = GetCurrentCommandId(true);

	for (int lookups = 0; payload->person_key != NULL && lookups < MAX_LOOKUPS; lookups++)
	{
		ItemPointerData tid;
		char	   *state = NULL;
		TM_FailureData tmfd;
		TM_Result	result;

		if (!find_candidate(store, server, payload->person_key, &tid, &state))
			continue;			/* waited for another enqueuer: look again */
		if (!ItemPointerIsValid(&tid))
			break;
		/* an invalid row replaces only an invalid item, never a good payload */
		if (payload->body == NULL && strcmp(state, "invalid") != 0)
			break;

		result = table_tuple_lock(store->rel, &tid, store->estate->es_snapshot,
								  store->found, GetCurrentCommandId(true),
								  LockTupleNoKeyExclusive, LockWaitSkip, 0, &tmfd);
		if (result == TM_Ok)
		{
			id = replace_item(store, payload, enqueued_by);
			break;
		}
		if (result != TM_Updated && result != TM_Deleted)
			break;				/* a deliverer holds it: queue behind it */
	}

	if (id < 0)
		id = insert_item(store, server, payload, enqueued_by);
	ResetPerTupleExprContext(store->estate);
	return id;
}
