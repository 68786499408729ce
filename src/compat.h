/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  The differences between the PostgreSQL versions campus_sync builds
 *	  against (15 to 18), in one place: every version guard of the code is
 *	  here, each named after what the code needs rather than the version.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_COMPAT_H
#define CAMPUS_SYNC_COMPAT_H

#include "postgres.h"

#include "access/genam.h"
#include "access/tableam.h"
#include "catalog/pg_foreign_server.h"
#include "common/jsonapi.h"
#include "executor/executor.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/wait_event.h"

#if PG_VERSION_NUM < 150000 || PG_VERSION_NUM >= 190000
#error "campus_sync builds against PostgreSQL 15 to 18"
#endif

/* 18 replaced pg_attribute_noreturn(), placed after, by pg_noreturn, before */
#if PG_VERSION_NUM >= 180000
#define CS_NORETURN pg_noreturn
#else
#define CS_NORETURN pg_attribute_noreturn()
#endif

/* 16: pg_foreign_server_aclcheck() became object_aclcheck() */
static inline AclResult
cs_server_aclcheck(Oid server_oid, Oid roleid, AclMode mode)
{
#if PG_VERSION_NUM >= 160000
	return object_aclcheck(ForeignServerRelationId, server_oid, roleid, mode);
#else
	return pg_foreign_server_aclcheck(server_oid, roleid, mode);
#endif
}

/* Which index entries a written tuple needs. */
typedef enum CsIndexUpdate
{
	CS_INDEX_NONE,				/* a HOT update: none */
	CS_INDEX_INSERT,			/* a new tuple: all */
	CS_INDEX_UPDATE,			/* an updated tuple: all */
	CS_INDEX_UPDATE_SUMMARIZING /* 16+: only the summarizing indexes' (BRIN) */
} CsIndexUpdate;

/*
 * 16: simple_table_tuple_update() says which indexes need new entries as a
 * TU_UpdateIndexes (none, all, or only the summarizing ones), not a bool.
 */
static inline CsIndexUpdate
cs_simple_update(Relation rel, ItemPointer tid, TupleTableSlot *slot, Snapshot snapshot)
{
#if PG_VERSION_NUM >= 160000
	TU_UpdateIndexes update_indexes;

	simple_table_tuple_update(rel, tid, slot, snapshot, &update_indexes);
	return update_indexes == TU_None ? CS_INDEX_NONE :
		update_indexes == TU_Summarizing ? CS_INDEX_UPDATE_SUMMARIZING : CS_INDEX_UPDATE;
#else
	bool		update_indexes;

	simple_table_tuple_update(rel, tid, slot, snapshot, &update_indexes);
	return update_indexes ? CS_INDEX_UPDATE : CS_INDEX_NONE;
#endif
}

/* 16: ExecInsertIndexTuples() may be asked for the summarizing ones only */
static inline List *
cs_insert_index_tuples(ResultRelInfo *rri, TupleTableSlot *slot, EState *estate,
					   CsIndexUpdate update)
{
	bool		is_update = update != CS_INDEX_INSERT;

#if PG_VERSION_NUM >= 160000
	return ExecInsertIndexTuples(rri, slot, estate, is_update, false, NULL, NIL,
								 update == CS_INDEX_UPDATE_SUMMARIZING);
#else
	return ExecInsertIndexTuples(rri, slot, estate, is_update, false, NULL, NIL);
#endif
}

/* 16: JSON semantic actions return a JsonParseErrorType */
#if PG_VERSION_NUM >= 160000
#define CS_JSON_ACTION JsonParseErrorType
#define CS_JSON_ACTION_DONE return JSON_SUCCESS
#else
#define CS_JSON_ACTION void
#define CS_JSON_ACTION_DONE return
#endif

/* 17: a JsonLexContext may be the caller's; NULL makes one, as before */
static inline JsonLexContext *
cs_json_lexer(const char *json, int encoding)
{
#if PG_VERSION_NUM >= 170000
	return makeJsonLexContextCstringLen(NULL, json, strlen(json), encoding, true);
#else
	return makeJsonLexContextCstringLen((char *) json, strlen(json), encoding, true);
#endif
}

/* 17: a PGPROC's number is computed, no longer a field */
static inline int
cs_my_procno(void)
{
#if PG_VERSION_NUM >= 170000
	return GetNumberFromPGProc(MyProc);
#else
	return MyProc->pgprocno;
#endif
}

/*
 * 17: an extension's waits may have names of their own in pg_stat_activity
 * (wait_event); before, every one is "Extension".  *id caches the number.
 */
static inline uint32
cs_wait_event(uint32 *id, const char *name)
{
#if PG_VERSION_NUM >= 170000
	if (*id == 0)
		*id = WaitEventExtensionNew(name);
	return *id;
#else
	(void) id;
	(void) name;
	return PG_WAIT_EXTENSION;
#endif
}

/* 18: index scans take an instrumentation argument (none here) */
static inline IndexScanDesc
cs_index_beginscan(Relation heap, Relation index, Snapshot snapshot, int nkeys)
{
#if PG_VERSION_NUM >= 180000
	return index_beginscan(heap, index, snapshot, NULL, nkeys, 0);
#else
	return index_beginscan(heap, index, snapshot, nkeys, 0);
#endif
}

#endif							/* CAMPUS_SYNC_COMPAT_H */
