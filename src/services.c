/*-------------------------------------------------------------------------
 *
 * services.c
 *	  The registry of services: the one place that lists them.  A new
 *	  service is its own file, which defines <name>_service, and its name
 *	  in SERVICE_LIST.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "service.h"

#define SERVICE_LIST(X) X(opscom) X(cloudcard) X(webhook)

#define DECLARE_SERVICE(s) extern const ServiceDescriptor s##_service;
#define LIST_SERVICE(s) &s##_service,

SERVICE_LIST(DECLARE_SERVICE)

static const ServiceDescriptor *const services[] = {SERVICE_LIST(LIST_SERVICE)};

int
service_count(void)
{
	return (int) lengthof(services);
}

const ServiceDescriptor *
service_at(int i)
{
	Assert(i >= 0 && i < service_count());
	return services[i];
}

/* The service called name, or NULL. */
const ServiceDescriptor *
service_find(const char *name)
{
	for (int i = 0; i < service_count(); i++)
		if (strcmp(services[i]->name, name) == 0)
			return services[i];
	return NULL;
}

static bool
list_has(const OptionDef *defs, const char *const *names, const char *option)
{
	if (defs)
		for (; defs->name; defs++)
			if (strcmp(defs->name, option) == 0)
				return true;
	if (names)
		for (; *names; names++)
			if (strcmp(*names, option) == 0)
				return true;
	return false;
}

/* The first service that takes option (a secret, or a server option), or NULL. */
const ServiceDescriptor *
service_declaring(const char *option, bool secret)
{
	for (int i = 0; i < service_count(); i++)
		if (list_has(secret ? NULL : services[i]->options,
					 secret ? services[i]->secret_options : NULL, option))
			return services[i];
	return NULL;
}

/* Every service's name, separated: "opscom|cloudcard|webhook". */
char *
service_names(const char *separator)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < service_count(); i++)
		appendStringInfo(&buf, "%s%s", i ? separator : "", services[i]->name);
	return buf.data;
}
