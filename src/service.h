/*-------------------------------------------------------------------------
 *
 * service.h
 *	  A service, as the generic code sees it: a descriptor, like a table
 *	  access method's routine.  It names the service, lists the server and
 *	  user mapping options only it takes, and gives the body builder
 *	  (fields, key rule, validation), the request plan and the answer
 *	  classifier.  Options, row planning, the queue, delivery and HTTP go
 *	  through it and never name a service.
 *
 *	  A new service is one file that defines its descriptor, plus its line
 *	  in services.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CAMPUS_SYNC_SERVICE_H
#define CAMPUS_SYNC_SERVICE_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "nodes/pg_list.h"

typedef struct SyncTarget SyncTarget;
typedef struct TargetSecret TargetSecret;
typedef struct PayloadPlan PayloadPlan;
typedef struct RowValues RowValues;
typedef struct Payload Payload;
typedef struct SyncJob SyncJob;
typedef struct JobRequest JobRequest;
typedef struct ResponseInfo ResponseInfo;
typedef struct ServerCheck ServerCheck;

/* How an option's value is checked. */
typedef enum OptionKind
{
	OPT_STRING,					/* min..max characters */
	OPT_URL,
	OPT_INT,					/* min..max */
	OPT_BOOL,
	OPT_CHOICE,					/* one of choices, "a|b" */
	OPT_FIELDS					/* a list of the service's field names */
} OptionKind;

typedef struct OptionDef
{
	const char *name;
	OptionKind	kind;
	int			min;			/* OPT_INT bounds; OPT_STRING length */
	int			max;
	const char *choices;		/* OPT_CHOICE: "a|b" */
	bool		per_call;		/* may appear in a function's options */
} OptionDef;

typedef struct ServiceDescriptor
{
	const char *name;			/* the server's option service: "opscom" */
	const char *label;			/* as messages say it: "OPS-COM" */
	const char *example_url;	/* for hints */
	void		(*init) (void);	/* at module load (_PG_init); may be NULL */

	/*
	 * Server options only this service takes (NULL-terminated), validated
	 * by kind before set_option stores one in the service's own struct of
	 * options_size bytes (target->options), zeroed, then options_init.
	 */
	const OptionDef *options;
	Size		options_size;
	void		(*options_init) (void *options);
	void		(*set_option) (void *options, const char *name, const char *value);
	/* the url as paths are appended to it, without a trailing "/" */
	char	   *(*base_url) (const char *url);

	/*
	 * User mapping options, the secrets (NULL-terminated).  The validator
	 * does not know a mapping's server: it takes an option any service
	 * names, and check_secrets (may be NULL) of every service checks those
	 * that are its own.  choose_secret picks the one a request sends (NULL
	 * if none) and says which option it was in *option.
	 */
	const char *const *secret_options;
	void		(*check_secrets) (List *options);
	const char *(*choose_secret) (List *options, const char **option);
	bool		secret_required;	/* false: a request may go without */
	const char *secret_example; /* the option to add, for hints */

	/* bodies (payload.c drives them) */
	const char *(*key_field) (SyncTarget *target);
	const char *example_field;	/* for hints: "unique_id" */
	bool		(*is_field) (const char *name);
	/* may a mapping give this field an object (names to columns)? NULL: no */
	bool		(*takes_object) (const char *field);
	const char *object_example; /* for hints: "{\"Class Year\": \"class_year\"}" */
	PayloadPlan *(*plan_create) (SyncTarget *target, TupleDesc desc, List *mapping);

	/*
	 * Deprovisioning (server option on_delete 'disable'): the body of a
	 * disable, which prepare sends for a JOB_DISABLE; NULL when the service
	 * cannot disable anyone, and cannot_disable says why (a DETAIL).
	 */
	const char *disable_body;
	const char *cannot_disable;
	void		(*build) (PayloadPlan *plan, RowValues *row, Payload *out);
	int		   *(*source_columns) (PayloadPlan *plan, int *n);

	/* requests (request.c drives them) */

	/*
	 * Fills the job's next request; false when the job ended without one
	 * (job_finish was called).
	 */
	bool		(*prepare) (SyncJob *job, JobRequest *req);

	/*
	 * Reads a finished request's answer: ends the job (job_finish) or
	 * moves it to its next step (job_start).
	 */
	void		(*judge) (SyncJob *job, ResponseInfo *info, const char *location);

	/*
	 * Proves that the url answers, TLS verifies and the credentials are
	 * accepted, changing nothing at the remote (check_server()).
	 */
	void		(*check) (SyncTarget *target, TargetSecret *secret, ServerCheck *out);
} ServiceDescriptor;

/* services.c: the registry */
extern const ServiceDescriptor *service_find(const char *name);
extern const ServiceDescriptor *service_declaring(const char *option, bool secret);
extern char *service_names(const char *separator);
extern int	service_count(void);
extern const ServiceDescriptor *service_at(int i);

#endif							/* CAMPUS_SYNC_SERVICE_H */
