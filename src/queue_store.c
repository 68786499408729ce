/*-------------------------------------------------------------------------
 *
 * queue_store.c
 *	  campus_sync.queue_items without SPI or the planner: the delivery
 *	  engine reads and writes it the way logical replication's apply worker
 *	  does: index scans, table_tuple_lock, table_multi_insert, and the
 *	  executor's own index maintenance (ExecOpenIndices,
 *	  ExecInsertIndexTuples), which knows every kind of index and what each
 *	  PostgreSQL version asks of it (BRIN's insert state, since 17, is
 *	  released by ExecCloseIndices).
 *
 *	  What does not change between transactions -- the table's shape and
 *	  the slots -- is built once per backend and dropped when the relcache
 *	  says a queue relation changed.  The relations, their index
 *	  information and an executor state are made per use.
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

#include "compat.h"
#include "queue_store.h"

static const char *const queue_column_names[N_QUEUE_COLUMNS] = {
	"id", "server", "person_key", "state", "payload", "enqueued_by", "attempts",
	"next_attempt_at", "last_http_status", "last_error", "remote_id",
	"enqueued_at", "delivered_at", "server_oid", "service", "key_field", "kind"
};

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
	Oid		   *index_oids;
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
		if (relid == shape.index_oids[i])
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
 * The claims scan queue_items_key by (server_oid, person_key), as 0.3 made
 * it; an older catalog's index (person_key) would be read wrongly.
 */
static void
check_key_index(Relation index)
{
	Form_pg_index form = index->rd_index;

	if (form->indnatts != 2 ||
		form->indkey.values[0] != shape.attnum[COL_SERVER_OID] ||
		form->indkey.values[1] != shape.attnum[COL_PERSON_KEY])
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("campus_sync.queue_items_key is not an index on (server_oid, person_key)"),
				 errdetail("The extension's SQL objects are older than its library (version %s).",
						   EXTVERSION),
				 errhint("Run ALTER EXTENSION campus_sync UPDATE;")));
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
	/* with its constraints: a column added by an upgrade reads its default */
	shape.desc = CreateTupleDescCopyConstr(RelationGetDescr(rel));
	find_columns(shape.desc, queue_column_names, N_QUEUE_COLUMNS, shape.attnum,
				 "queue_items");

	index_oids = RelationGetIndexList(rel);
	shape.nindexes = list_length(index_oids);
	shape.index_oids = palloc0(sizeof(Oid) * shape.nindexes);
	foreach(lc, index_oids)
		shape.index_oids[i++] = lfirst_oid(lc);

	shape.found = MakeSingleTupleTableSlot(shape.desc, table_slot_callbacks(rel));
	shape.probe = MakeSingleTupleTableSlot(shape.desc, table_slot_callbacks(rel));
	shape.row = MakeSingleTupleTableSlot(shape.desc, &TTSOpsVirtual);
	MemoryContextSwitchTo(old);
	shape.valid = true;
}

QueueStore *
queue_store_open(void)
{
	/* what a use allocates goes with it (the worker opens one per commit) */
	MemoryContext mcxt = AllocSetContextCreate(CurrentMemoryContext, "campus_sync queue use",
											   ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(mcxt);
	QueueStore *store = palloc0(sizeof(QueueStore));

	store->mcxt = mcxt;

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
	 * Every index is opened now, for the whole use, with its IndexInfo (the
	 * executor's, made from the entries now open).  Opening an index can
	 * take in invalidations that change the queue (ALTER EXTENSION UPDATE):
	 * then the shape is built again and the indexes opened again.
	 */
	store->estate = CreateExecutorState();
	store->rri = makeNode(ResultRelInfo);
	for (;;)
	{
		if (!shape.valid || shape.rel_oid != RelationGetRelid(store->rel))
			build_shape(store->rel);
		InitResultRelInfo(store->rri, store->rel, 0, NULL, 0);
		ExecOpenIndices(store->rri, false);
		if (shape.valid)
			break;
		ExecCloseIndices(store->rri);
	}
	store->shape = &shape;
	for (int i = 0; i < store->rri->ri_NumIndices; i++)
		if (RelationGetRelid(store->rri->ri_IndexRelationDescs[i]) == shape.key_index_oid)
			store->key_index = store->rri->ri_IndexRelationDescs[i];
	if (store->key_index == NULL)
		elog(ERROR, "campus_sync.queue_items_key is not among the queue's indexes");
	check_key_index(store->key_index);
	MemoryContextSwitchTo(old);
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
	ExecCloseIndices(store->rri);
	FreeExecutorState(store->estate);
	table_close(store->rel, NoLock);
	store->shape->in_use = false;
	MemoryContextDelete(store->mcxt);
}

/* Adds the row's index entries, the executor's way. */
static void
insert_index_entries(QueueStore *store, TupleTableSlot *slot, CsIndexUpdate update)
{
	list_free(cs_insert_index_tuples(store->rri, slot, store->estate, update));
	ResetPerTupleExprContext(store->estate);
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
	CsIndexUpdate update;

	ExecStoreVirtualTuple(store->row);
	update = cs_simple_update(store->rel, tid, store->row, GetActiveSnapshot());
	if (update != CS_INDEX_NONE)
		insert_index_entries(store, store->row, update);
}

/* The scan key of the key index for one person. */
void
person_scan_key(ScanKey keys, Oid server_oid, const char *person_key)
{
	server_scan_key(&keys[0], server_oid);
	ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid,
						   C_COLLATION_OID, F_TEXTEQ, CStringGetTextDatum(person_key));
}

/* The first key of a scan of queue_items_key (server_oid, person_key). */
void
server_scan_key(ScanKey key, Oid server_oid)
{
	ScanKeyEntryInitialize(key, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   InvalidOid, F_OIDEQ, ObjectIdGetDatum(server_oid));
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
	SET(COL_STATE, CStringGetTextDatum(r->payload == NULL ? "invalid" :
									   r->held ? "held" : "pending"));
	SET_TEXT(COL_PAYLOAD, r->payload);
	SET_TEXT(COL_ENQUEUED_BY, r->enqueued_by);
	SET(COL_ATTEMPTS, Int32GetDatum(0));
	SET(COL_NEXT_ATTEMPT_AT, TimestampTzGetDatum(now));
	SET_TEXT(COL_LAST_ERROR, r->error);
	SET(COL_ENQUEUED_AT, TimestampTzGetDatum(r->enqueued_at));
	SET(COL_SERVER_OID, ObjectIdGetDatum(r->server_oid));
	SET_TEXT(COL_SERVICE, r->service);
	SET_TEXT(COL_KEY_FIELD, r->key_field);
	SET_TEXT(COL_KIND, r->kind ? r->kind : "upsert");
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
			insert_index_entries(store, sh->batch[i], CS_INDEX_INSERT);
			ExecClearTuple(sh->batch[i]);
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(batch_cxt);
	}
	FreeBulkInsertState(bistate);
	MemoryContextDelete(batch_cxt);
}
