/*-------------------------------------------------------------------------
 *
 * queue_store.c
 *	  campus_sync.queue_items without SPI or the planner: the delivery
 *	  engine reads and writes it the way logical replication's apply worker
 *	  does: index scans, table_tuple_lock, table_multi_insert and index
 *	  insertion.
 *
 *	  What does not change between transactions -- the table's shape, the
 *	  information on its indexes with their compiled predicates, the slots
 *	  -- is built once per backend and dropped when the relcache says a
 *	  queue relation changed.  Only the relations are opened per use.
 *	  The CHECK constraint on state guards writers that use SQL; this code
 *	  writes only valid states and does not evaluate it.
 *
 *	  New items arrive through campus_sync.inbox (inbox.c), which the
 *	  delivery engine moves here in batches (queue_move.c); coalescing
 *	  happens then and when items are claimed (queue_claim.c).  Items keep
 *	  the ids they were given when queued: in the order their transactions
 *	  queued them, which is commit order for changes that the person's row
 *	  serializes (a trigger on the person table).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation_d.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "queue_store.h"

static const char *const queue_column_names[N_QUEUE_COLUMNS] = {
	"id", "server", "person_key", "state", "payload", "enqueued_by", "attempts",
	"next_attempt_at", "last_http_status", "last_error", "remote_id",
	"enqueued_at", "delivered_at", "server_oid", "service", "key_field"
};

/* An index of the queue, and its partial-index predicate, compiled. */
typedef struct QueueIndex
{
	Oid			oid;
	IndexInfo  *info;
	ExprState  *predicate;		/* NULL: not partial */
} QueueIndex;

/* What the backend keeps of the queue between uses. */
typedef struct QueueShape
{
	bool		valid;
	bool		in_use;			/* opened and not closed: a use was aborted */
	MemoryContext mcxt;
	Oid			rel_oid;
	Oid			key_index_oid;
	TupleDesc	desc;			/* a copy: slots do not pin the relcache's */
	AttrNumber	attnum[N_QUEUE_COLUMNS];
	int			nindexes;
	QueueIndex *indexes;
	EState	   *estate;			/* evaluates the predicates */
	TupleTableSlot *found;
	TupleTableSlot *probe;
	TupleTableSlot *row;
	TupleTableSlot **batch;		/* QUEUE_BATCH slots, made on first use */
} QueueShape;

/* Items written per multi-insert. */
#define QUEUE_BATCH 1000

static QueueShape shape;
static bool callback_registered = false;

static void
forget_shape(Datum arg, Oid relid)
{
	(void) arg;
	if (!shape.valid)
		return;
	if (!OidIsValid(relid) || relid == shape.rel_oid)
		shape.valid = false;
	for (int i = 0; shape.valid && i < shape.nindexes; i++)
		if (relid == shape.indexes[i].oid)
			shape.valid = false;
}

/*
 * An error ended a use of the queue: its slots' buffer pins went with the
 * resource owner, so the shape must be rebuilt, not cleaned up.
 */
static void
abandon_shape_on_abort(XactEvent event, void *arg)
{
	(void) arg;
	if ((event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT) && shape.in_use)
		shape.valid = false;
}

static void
abandon_shape_on_subabort(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid, void *arg)
{
	(void) mySubid;
	(void) parentSubid;
	(void) arg;
	if (event == SUBXACT_EVENT_ABORT_SUB && shape.in_use)
		shape.valid = false;
}

Oid
queue_relation_oid(const char *relname)
{
	Oid			nsp = get_namespace_oid("campus_sync", false);
	Oid			relid = get_relname_relid(relname, nsp);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation campus_sync.%s does not exist", relname),
				 errhint("The campus_sync extension is not installed correctly; reinstall it.")));
	return relid;
}

/* The attribute numbers of the named columns of a campus_sync table. */
void
find_columns(TupleDesc desc, const char *const *names, int n, AttrNumber *attnum,
			 const char *relname)
{
	for (int c = 0; c < n; c++)
	{
		attnum[c] = InvalidAttrNumber;
		for (int a = 0; a < desc->natts; a++)
			if (!TupleDescAttr(desc, a)->attisdropped &&
				strcmp(NameStr(TupleDescAttr(desc, a)->attname), names[c]) == 0)
				attnum[c] = a + 1;
		if (attnum[c] == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("campus_sync.%s has no column \"%s\"", relname, names[c]),
					 errdetail("The extension's SQL objects are older than its library (version %s).",
							   EXTVERSION),
					 errhint("Run ALTER EXTENSION campus_sync UPDATE;")));
	}
}

/*
 * Builds the shape from the opened queue table.  A previous shape is
 * dropped without touching its slots: after an aborted use their buffer
 * pins were released with the resource owner.
 */
static void
build_shape(Relation rel)
{
	MemoryContext old;
	List	   *index_oids;
	ListCell   *lc;
	int			i = 0;

	if (shape.mcxt)
		MemoryContextDelete(shape.mcxt);
	memset(&shape, 0, sizeof(shape));
	shape.mcxt = AllocSetContextCreate(CacheMemoryContext, "campus_sync queue shape",
									   ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(shape.mcxt);

	shape.rel_oid = RelationGetRelid(rel);
	shape.key_index_oid = queue_relation_oid("queue_items_key");
	shape.desc = CreateTupleDescCopy(RelationGetDescr(rel));
	find_columns(shape.desc, queue_column_names, N_QUEUE_COLUMNS, shape.attnum,
				 "queue_items");

	shape.estate = CreateExecutorState();
	index_oids = RelationGetIndexList(rel);
	shape.nindexes = list_length(index_oids);
	shape.indexes = palloc0(sizeof(QueueIndex) * shape.nindexes);
	foreach(lc, index_oids)
	{
		Relation	index = index_open(lfirst_oid(lc), RowExclusiveLock);
		QueueIndex *qi = &shape.indexes[i++];

		qi->oid = RelationGetRelid(index);
		qi->info = BuildIndexInfo(index);
		if (qi->info->ii_Predicate != NIL)
			qi->predicate = ExecPrepareQual(qi->info->ii_Predicate, shape.estate);
		index_close(index, NoLock);
	}

	shape.found = MakeSingleTupleTableSlot(shape.desc, table_slot_callbacks(rel));
	shape.probe = MakeSingleTupleTableSlot(shape.desc, table_slot_callbacks(rel));
	shape.row = MakeSingleTupleTableSlot(shape.desc, &TTSOpsVirtual);
	MemoryContextSwitchTo(old);
	shape.valid = true;
}

QueueStore *
queue_store_open(void)
{
	QueueStore *store = palloc0(sizeof(QueueStore));

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(forget_shape, (Datum) 0);
		RegisterXactCallback(abandon_shape_on_abort, NULL);
		RegisterSubXactCallback(abandon_shape_on_subabort, NULL);
		callback_registered = true;
	}
	if (shape.in_use && shape.valid)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("the campus_sync queue is already in use in this backend"),
				 errdetail("A queue operation was started from inside another one.")));
	store->rel = table_open(shape.valid ? shape.rel_oid : queue_relation_oid("queue_items"),
							RowExclusiveLock);

	/*
	 * Every index is opened now, for the whole use: an open index's relcache
	 * entry is never freed, and the shape's IndexInfos point into it (BRIN's
	 * ii_AmCache keeps the index's Relation and TupleDesc).  Opening an index
	 * can take in invalidations that change it (ANALYZE, ALTER INDEX): then
	 * the shape is built again, from the entries now open.
	 */
	for (;;)
	{
		if (!shape.valid || shape.rel_oid != RelationGetRelid(store->rel))
			build_shape(store->rel);
		store->indexes = palloc0(sizeof(Relation) * shape.nindexes);
		for (int i = 0; i < shape.nindexes; i++)
			store->indexes[i] = index_open(shape.indexes[i].oid, RowExclusiveLock);
		if (shape.valid)
			break;
		for (int i = 0; i < shape.nindexes; i++)
			index_close(store->indexes[i], NoLock);
		pfree(store->indexes);
	}
	store->shape = &shape;
	for (int i = 0; i < shape.nindexes; i++)
		if (shape.indexes[i].oid == shape.key_index_oid)
			store->key_index = store->indexes[i];
	store->estate = shape.estate;
	store->found = shape.found;
	store->probe = shape.probe;
	store->row = shape.row;
	store->attnum = shape.attnum;
	shape.in_use = true;
	return store;
}

void
queue_store_close(QueueStore *store)
{
	/* slots must not keep buffer pins past this use */
	ExecClearTuple(store->found);
	ExecClearTuple(store->probe);
	ExecClearTuple(store->row);
	for (int i = 0; i < store->shape->nindexes; i++)
		index_close(store->indexes[i], NoLock);
	table_close(store->rel, NoLock);
	store->shape->in_use = false;
	pfree(store->indexes);
	pfree(store);
}

/*
 * Adds the row's entries to the indexes whose predicate it satisfies (what
 * ExecInsertIndexTuples does, for a table without expression indexes or
 * exclusion constraints).
 */
static void
insert_index_entries(QueueStore *store, TupleTableSlot *slot, bool is_update)
{
	ExprContext *econtext = GetPerTupleExprContext(store->estate);
	Datum		values[INDEX_MAX_KEYS];
	bool		isnull[INDEX_MAX_KEYS];

	econtext->ecxt_scantuple = slot;
	for (int i = 0; i < store->shape->nindexes; i++)
	{
		QueueIndex *qi = &store->shape->indexes[i];

		if (qi->predicate && !ExecQual(qi->predicate, econtext))
			continue;
		FormIndexDatum(qi->info, slot, store->estate, values, isnull);
		index_insert(store->indexes[i], values, isnull, &slot->tts_tid, store->rel,
					 qi->info->ii_Unique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO,
					 is_update, qi->info);
	}
	ResetExprContext(econtext);
}

void
text_or_null(QueueStore *store, QueueColumn col, const char *s)
{
	if (s == NULL)
		ROW_SET_NULL(store, col);
	else
		ROW_SET(store, col, CStringGetTextDatum(s));
}

char *
slot_text(QueueStore *store, TupleTableSlot *slot, QueueColumn col)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, store->attnum[col], &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

int64
slot_int64(QueueStore *store, TupleTableSlot *slot, QueueColumn col)
{
	bool		isnull;

	return DatumGetInt64(slot_getattr(slot, store->attnum[col], &isnull));
}

Oid
slot_oid(QueueStore *store, TupleTableSlot *slot, QueueColumn col)
{
	bool		isnull;

	return DatumGetObjectId(slot_getattr(slot, store->attnum[col], &isnull));
}

/*
 * Raises *max_lsn to where the commit of the slot's tuple version ends in
 * the WAL, when that commit was asynchronous (synchronous_commit = off) and
 * may not be on disk yet.  The caller flushes the WAL that far before it
 * sends anything it read.
 */
void
note_commit_lsn(TupleTableSlot *slot, XLogRecPtr *max_lsn)
{
	bool		isnull;
	TransactionId xmin = DatumGetTransactionId(slot_getsysattr(slot, MinTransactionIdAttributeNumber,
															   &isnull));

	if (!isnull && TransactionIdIsNormal(xmin) && !TransactionIdIsCurrentTransactionId(xmin))
	{
		XLogRecPtr	lsn = TransactionIdGetCommitLSN(xmin);

		if (lsn > *max_lsn)
			*max_lsn = lsn;
	}
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
	simple_table_tuple_update(store->rel, tid, store->row, GetActiveSnapshot(),
							  &update_indexes);
	if (update_indexes)
		insert_index_entries(store, store->row, true);
}

/* The scan key of the key index for one person. */
void
person_scan_key(ScanKey key, const char *person_key)
{
	ScanKeyEntryInitialize(key, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   C_COLLATION_OID, F_TEXTEQ, CStringGetTextDatum(person_key));
}

/*
 * Fills a slot with an item moved from the inbox (it keeps its id and
 * enqueued_at).  Its strings must outlive the slot's use: the caller's
 * memory context holds them.
 */
static void
fill_new_item(QueueStore *store, TupleTableSlot *slot, QueueRow *r, TimestampTz now)
{
	AttrNumber *attnum = store->shape->attnum;

#define SET(col, datum) \
	(slot->tts_values[attnum[col] - 1] = (datum), slot->tts_isnull[attnum[col] - 1] = false)
#define SET_TEXT(col, str) \
	do { if (str) SET(col, CStringGetTextDatum(str)); } while (0)

	ExecClearTuple(slot);
	for (int i = 0; i < slot->tts_tupleDescriptor->natts; i++)
		slot->tts_isnull[i] = true;
	SET(COL_ID, Int64GetDatum(r->id));
	SET_TEXT(COL_SERVER, r->server);
	SET_TEXT(COL_PERSON_KEY, r->person_key);
	SET(COL_STATE, CStringGetTextDatum(r->payload ? "pending" : "invalid"));
	SET_TEXT(COL_PAYLOAD, r->payload);
	SET_TEXT(COL_ENQUEUED_BY, r->enqueued_by);
	SET(COL_ATTEMPTS, Int32GetDatum(0));
	SET(COL_NEXT_ATTEMPT_AT, TimestampTzGetDatum(now));
	SET_TEXT(COL_LAST_ERROR, r->error);
	SET(COL_ENQUEUED_AT, TimestampTzGetDatum(r->enqueued_at));
	SET(COL_SERVER_OID, ObjectIdGetDatum(r->server_oid));
	SET_TEXT(COL_SERVICE, r->service);
	SET_TEXT(COL_KEY_FIELD, r->key_field);
#undef SET
#undef SET_TEXT
	ExecStoreVirtualTuple(slot);
}

/*
 * queue_store_put_many
 *		Queues many items moved from the inbox: the heap in multi-insert
 *		batches (one WAL record per page), then their index entries.
 */
void
queue_store_put_many(QueueStore *store, QueueRow *rows, int n)
{
	QueueShape *sh = store->shape;
	BulkInsertState bistate = GetBulkInsertState();
	MemoryContext batch_cxt = AllocSetContextCreate(CurrentMemoryContext,
													"campus_sync queue batch",
													ALLOCSET_DEFAULT_SIZES);
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	CommandId	cid = GetCurrentCommandId(true);

	if (sh->batch == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(sh->mcxt);

		sh->batch = palloc(sizeof(TupleTableSlot *) * QUEUE_BATCH);
		for (int i = 0; i < QUEUE_BATCH; i++)
			sh->batch[i] = MakeSingleTupleTableSlot(sh->desc, &TTSOpsVirtual);
		MemoryContextSwitchTo(old);
	}

	for (int done = 0; done < n; done += QUEUE_BATCH)
	{
		int			count = Min(QUEUE_BATCH, n - done);
		MemoryContext old = MemoryContextSwitchTo(batch_cxt);

		for (int i = 0; i < count; i++)
			fill_new_item(store, sh->batch[i], &rows[done + i], now);
		table_multi_insert(store->rel, sh->batch, count, cid, 0, bistate);
		for (int i = 0; i < count; i++)
		{
			insert_index_entries(store, sh->batch[i], false);
			ExecClearTuple(sh->batch[i]);
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(batch_cxt);
	}
	FreeBulkInsertState(bistate);
	MemoryContextDelete(batch_cxt);
}
