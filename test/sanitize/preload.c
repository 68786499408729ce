/*
 * test/sanitize/preload.c: preloaded into the server by test/sanitize.sh,
 * between libasan and libubsan; NOT part of the extension.  Two fixes for
 * running an uninstrumented PostgreSQL with the GCC 12 sanitizer runtimes:
 *
 * swift_demangle: without it the server hangs before main().  libgpg-error's
 * constructor (postgres -> libsystemd -> libgcrypt -> libgpg-error) calls
 * bindtextdomain(), which mallocs while holding glibc's _nl_state_lock for
 * writing; that first malloc initializes ASan, which looks up swift_demangle
 * with dlsym() and, not finding it, calls dlerror(), which translates the
 * message under the same lock: the read lock fails (EDEADLK, ignored), the
 * unlock that follows corrupts the lock, and the next bindtextdomain() waits
 * forever (google/sanitizers#1270, llvm/llvm-project#49223).  When the
 * symbol exists, dlsym() succeeds and dlerror() has nothing to translate.
 * ASan calls it only to demangle Swift names; NULL means "not demangled".
 *
 * __ubsan_default_options: UBSan initializes at its first report, in a
 * backend, and reads UBSAN_OPTIONS from /proc/self/environ, which the
 * backend has overwritten with its process title: the options would be
 * lost (no stack trace; and UBSan's log_path, default stderr, is also where
 * ASan's later reports of that process would go).  getenv() still works
 * there: PostgreSQL moved the environment before overwriting it.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

char	   *swift_demangle(const char *mangled, size_t mangled_len,
						   char *out, size_t *out_len, uint32_t flags);
const char *__ubsan_default_options(void);

char *
swift_demangle(const char *mangled, size_t mangled_len,
			   char *out, size_t *out_len, uint32_t flags)
{
	(void) mangled;
	(void) mangled_len;
	(void) out;
	(void) out_len;
	(void) flags;
	return NULL;
}

const char *
__ubsan_default_options(void)
{
	const char *options = getenv("UBSAN_OPTIONS");

	return options ? options : "";
}
