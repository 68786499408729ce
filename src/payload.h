/*-------------------------------------------------------------------------
 *
 * payload.h
 *	  From a row of any type to the JSON body of a service's request:
 *	  column matching, mapping renames, value formatting and validation.
 *	  Each service's builder (its descriptor's plan_create and build) uses
 *	  the helpers declared here.
 *
 *	  Building is split in two: a plan (which column feeds which API field,
 *	  made once per row type and mapping) and the build of one row.  A bad
 *	  mapping is a configuration problem and raises when the plan is made;
 *	  a bad row is reported in a PayloadError, so that callers can choose
 *	  to raise it, return it, or queue it as an invalid item.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_PAYLOAD_H
#define CAMPUS_SYNC_PAYLOAD_H

#include "postgres.h"

#include "access/htup.h"
#include "access/tupdesc.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/jsonb.h"

#include "compat.h"
#include "target.h"

/* Why a row cannot be sent: an error to raise or to keep. */
typedef struct PayloadError
{
	int			sqlstate;
	char	   *message;
	char	   *detail;			/* may be NULL */
	char	   *hint;			/* may be NULL */
} PayloadError;

/* One person's request body, or the reason there is none. */
struct Payload
{
	char	   *body;			/* JSON object, server encoding, no secret */
	char	   *person_key;		/* unique_id, identifier or email */
	PayloadError *error;		/* set when body is NULL */
};

/* A deformed row. */
struct RowValues
{
	TupleDesc	desc;
	Datum	   *values;
	bool	   *nulls;
};

/* How a column's value becomes text. */
typedef enum ValueConv
{
	CONV_TEXT,					/* text, varchar */
	CONV_NAME,					/* name: fixed-size, not a varlena */
	CONV_BPCHAR,				/* char(n): trailing blanks removed */
	CONV_NUMERIC,				/* numeric: NaN and infinities refused */
	CONV_FLOAT4,				/* real: the shortest exact decimal, and */
	CONV_FLOAT8,				/* double precision: NaN, infinities refused */
	CONV_DATE,					/* yyyy-mm-dd whatever DateStyle */
	CONV_TIMESTAMP,
	CONV_TIMESTAMPTZ,
	CONV_BOOL,
	CONV_JSON,
	CONV_JSONB,
	CONV_OTHER					/* the type's output function */
} ValueConv;

/* A column that feeds an API field. */
typedef struct SourceColumn
{
	int			attno;			/* 0-based */
	const char *colname;
	Oid			typid;
	ValueConv	conv;
	FmgrInfo	outfn;			/* CONV_OTHER only */
} SourceColumn;

/* What a mapping says about one API field. */
typedef struct MappingEntry
{
	char	   *field;			/* API field name (the mapping's key) */
	char	   *column;			/* column name; NULL: do not send */
	Jsonb	   *object;			/* an object (service->takes_object) */
} MappingEntry;

/* The start of every service's plan. */
struct PayloadPlan
{
	const ServiceDescriptor *service;	/* set by payload_plan_create */
	SyncTarget *target;
};

/* payload.c: dispatch and shared helpers */
extern PayloadPlan *payload_plan_create(SyncTarget *target, TupleDesc desc,
										Jsonb *mapping);
extern void payload_build(PayloadPlan *plan, RowValues *row, Payload *out);
extern CS_NORETURN void payload_raise(PayloadError *error);
extern char *payload_error_text(PayloadError *error);
extern int *payload_source_columns(PayloadPlan *plan, int *n);

extern void row_values_from_record(HeapTupleHeader rec, RowValues *row);
extern void row_values_from_tuple(TupleDesc desc, HeapTuple tuple, RowValues *row);

extern List *mapping_parse(Jsonb *mapping, const ServiceDescriptor *service);
extern const char *json_value_kind(JsonbValue *v);
extern char *json_value_excerpt(JsonbValue *v);
extern MappingEntry *mapping_find(List *entries, const char *field);
extern int	row_find_column(TupleDesc desc, const char *name);
extern void column_ref_init(SourceColumn *ref, TupleDesc desc, int attno);
extern SourceColumn *column_for_field(TupleDesc desc, List *mapping,
								   const char *field, const char *alt_name,
								   const char *service_label);
extern char *column_value_text(SourceColumn *ref, Datum value,
							   const char *service_label, const char *field,
							   PayloadError **error);

extern PayloadError *payload_error(int sqlstate, const char *message,
								   const char *detail, const char *hint);
extern PayloadError *check_max_length(const char *service_label,
									  const char *field, SourceColumn *col,
									  const char *value, int max_chars);
extern PayloadError *check_email(const char *service_label, const char *field,
								 const char *value);
extern PayloadError *missing_field_error(const char *service_label,
										 const char *field, SourceColumn *col,
										 const char *hint);

extern void add_source_column(int *columns, int *n, SourceColumn *col);
extern void json_add_field(StringInfo buf, bool *first, const char *field,
						   const char *value);
extern void json_add_string(StringInfo buf, bool *first, const char *key,
							const char *value);
extern void json_add_bool(StringInfo buf, bool *first, const char *key,
						  bool value);
extern void json_add_raw(StringInfo buf, bool *first, const char *key,
						 const char *raw);

#endif							/* CAMPUS_SYNC_PAYLOAD_H */
