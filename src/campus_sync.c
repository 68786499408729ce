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
#include "cloudcard_auth.h"
#include "http.h"
#include "queue_buffer.h"

PG_MODULE_MAGIC;

/* How long delivered payloads (personal data) are kept, in seconds. */
int			campus_sync_keep_delivered = 7 * 24 * 3600;

void		_PG_init(void);

void
_PG_init(void)
{
	http_init();
	cloudcard_auth_init();
	queue_buffer_init();

	DefineCustomIntVariable("campus_sync.keep_delivered",
							gettext_noop("How long a delivered queue item (and its payload) is kept."),
							gettext_noop("Delivered payloads hold personal data; deliver() and purge() delete older ones."),
							&campus_sync_keep_delivered,
							7 * 24 * 3600, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("campus_sync");
}
