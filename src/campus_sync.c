/*-------------------------------------------------------------------------
 *
 * campus_sync.c
 *	  Module entry point: initializes each part and defines the settings.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "campus_sync.h"
#include "http.h"
#include "pace.h"
#include "queue_buffer.h"
#include "service.h"
#include "session_share.h"
#include "shmem.h"
#include "worker.h"
#include "worker_state.h"

PG_MODULE_MAGIC;

/* How long delivered payloads (personal data) are kept, in seconds. */
int			campus_sync_keep_delivered = 7 * 24 * 3600;

void		_PG_init(void);

void
_PG_init(void)
{
	http_init();
	for (int i = 0; i < service_count(); i++)
		if (service_at(i)->init)
			service_at(i)->init();
	queue_buffer_init();

	DefineCustomIntVariable("campus_sync.keep_delivered",
							gettext_noop("How long a delivered queue item (and its payload) is kept."),
							gettext_noop("Delivered payloads hold personal data; deliver() and purge() delete older ones."),
							&campus_sync_keep_delivered,
							7 * 24 * 3600, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("campus_sync.poll_interval",
							gettext_noop("How often the campus_sync background worker looks for due retries."),
							gettext_noop("New items wake it at their commit; retries and probes of a target that is down wait for this."),
							&campus_sync_poll_interval_ms,
							1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	/*
	 * Read at server start, when the worker starts; PostgreSQL allows such
	 * settings only while preloading.  Loaded later there is no worker, and
	 * the setting (still read, from postgresql.conf say) changes nothing.
	 */
	DefineCustomStringVariable("campus_sync.database",
							   gettext_noop("The database whose queue the campus_sync background worker delivers."),
							   gettext_noop("Takes effect at server start, with campus_sync in shared_preload_libraries."),
							   &campus_sync_database,
							   "postgres",
							   process_shared_preload_libraries_in_progress ? PGC_POSTMASTER : PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	MarkGUCPrefixReserved("campus_sync");

	if (process_shared_preload_libraries_in_progress)
	{
		worker_state_request_shmem();
		session_share_request_shmem();
		pace_request_shmem();
		shmem_parts_install();
		/* pg_upgrade's servers deliver nothing */
		if (!IsBinaryUpgrade)
			worker_register();
	}
}
