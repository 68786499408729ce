/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Shared memory parts (see shmem.h): the worker's state, the shared
 *	  session tokens, the pace of each target.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"

#include "shmem.h"

#define SHMEM_MAX_PARTS 8

typedef struct ShmemPart
{
	const char *name;			/* of the struct, and of its LWLock tranche */
	Size		size;
	bool		with_lock;
	void	  **attach_to;
	ShmemPartInit init;
} ShmemPart;

static ShmemPart parts[SHMEM_MAX_PARTS];
static int	nparts = 0;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* From _PG_init, while preloading. */
void
shmem_part_add(const char *name, Size size, bool with_lock, void **attach_to,
			   ShmemPartInit init)
{
	if (nparts == SHMEM_MAX_PARTS)
		elog(ERROR, "campus_sync: too many shared memory parts");
	parts[nparts++] = (ShmemPart) {name, size, with_lock, attach_to, init};
}

static void
request_parts(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	for (int i = 0; i < nparts; i++)
	{
		RequestAddinShmemSpace(MAXALIGN(parts[i].size));
		if (parts[i].with_lock)
			RequestNamedLWLockTranche(parts[i].name, 1);
	}
}

static void
attach_parts(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	for (int i = 0; i < nparts; i++)
	{
		ShmemPart  *p = &parts[i];
		bool		found;
		void	   *part = ShmemInitStruct(p->name, p->size, &found);

		if (!found)
		{
			memset(part, 0, p->size);
			p->init(part, p->with_lock ? &(GetNamedLWLockTranche(p->name))->lock : NULL);
		}
		*p->attach_to = part;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* From _PG_init, after the parts were added. */
void
shmem_parts_install(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = request_parts;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = attach_parts;
}
