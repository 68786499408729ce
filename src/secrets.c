/*-------------------------------------------------------------------------
 *
 * secrets.c
 *	  Redaction of secrets from whatever a remote sends back.
 *
 *	  A remote may echo a secret it received: an OPS-COM api_token in an
 *	  error message, a CloudCard session token in a 401's body, a token in
 *	  the query string of a redirect.  Every secret this backend sends is
 *	  remembered here first (tokens, persistent access tokens, and every
 *	  session token obtained, renewed and old ones included, since an
 *	  answer to an earlier request may still arrive), and every text that
 *	  came from a remote goes through secrets_redact before it is
 *	  returned, stored or logged.
 *
 *	  Matching ignores ASCII case and sees through the escapes a remote can
 *	  wrap a secret in without changing its meaning: JSON's \/, \" and
 *	  \u0070 and a URL's %2F.  Callers decode JSON first (response.c);
 *	  the escapes matter for text that is not JSON (an HTML page, a body
 *	  cut at the size limit, a Location header).
 *
 *	  The list is bounded: past SECRETS_MAX the least recently used secret
 *	  is zeroed and dropped.  It lives for the backend's life, in this
 *	  backend's memory only.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/memutils.h"

#include "secrets.h"

StaticAssertDecl(SECRETS_MAX <= 64, "a secret's bit must fit in a uint64");

/* in TopMemoryContext; the most recently used last */
static char *secret_list[SECRETS_MAX];
static int	nsecrets = 0;

/* bit i of starts[b]: secret i begins with byte b (lower-cased) */
static uint64 starts[256];

static inline unsigned char
fold(unsigned char c)
{
	return (unsigned char) pg_ascii_tolower(c);
}

static void
rebuild_starts(void)
{
	memset(starts, 0, sizeof(starts));
	for (int i = 0; i < nsecrets; i++)
		starts[fold((unsigned char) secret_list[i][0])] |= UINT64CONST(1) << i;
}

/*
 * secrets_remember
 *		Adds a secret this backend is about to send (or has received to
 *		send later), or marks it as used again.
 */
void
secrets_remember(const char *secret)
{
	char	   *copy;

	if (secret == NULL || secret[0] == '\0')
		return;
	for (int i = 0; i < nsecrets; i++)
	{
		if (strcmp(secret_list[i], secret) == 0)
		{
			if (i < nsecrets - 1)
			{
				char	   *used = secret_list[i];

				memmove(&secret_list[i], &secret_list[i + 1],
						(nsecrets - 1 - i) * sizeof(char *));
				secret_list[nsecrets - 1] = used;
				rebuild_starts();
			}
			return;
		}
	}

	copy = MemoryContextStrdup(TopMemoryContext, secret);
	if (nsecrets == SECRETS_MAX)
	{
		explicit_bzero(secret_list[0], strlen(secret_list[0]));
		pfree(secret_list[0]);
		memmove(&secret_list[0], &secret_list[1], (SECRETS_MAX - 1) * sizeof(char *));
		nsecrets--;
	}
	secret_list[nsecrets++] = copy;
	rebuild_starts();
}

static int
hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * An escape at p that stands for one byte: JSON's \" \\ \/ \b \f \n \r \t,
 * \uXXXX below 0x80, or a URL's %XX.  Returns its length and sets *c, or
 * returns 0.
 */
static int
escape_at(const char *p, unsigned char *c)
{
	static const char simple[] = "\"\\/bfnrt";
	static const char meaning[] = "\"\\/\b\f\n\r\t";
	const char *pos;

	if (p[0] == '\\' && p[1] != '\0' && (pos = strchr(simple, p[1])) != NULL)
	{
		*c = (unsigned char) meaning[pos - simple];
		return 2;
	}
	if (p[0] == '\\' && p[1] == 'u')
	{
		int			v = 0;

		for (int i = 2; i < 6; i++)
		{
			int			h = hex_value((unsigned char) p[i]);

			if (h < 0)
				return 0;		/* also stops at the terminating NUL */
			v = v * 16 + h;
		}
		if (v >= 0x80)
			return 0;
		*c = (unsigned char) v;
		return 6;
	}
	if (p[0] == '%' && hex_value((unsigned char) p[1]) >= 0 &&
		hex_value((unsigned char) p[2]) >= 0)
	{
		*c = (unsigned char) (hex_value((unsigned char) p[1]) * 16 +
							  hex_value((unsigned char) p[2]));
		return 3;
	}
	return 0;
}

/*
 * How many bytes of text at p spell secret (each character literally, in
 * either case, or escaped); 0 when they do not.
 */
static size_t
match_length(const char *p, const char *secret)
{
	const char *start = p;

	for (const unsigned char *s = (const unsigned char *) secret; *s; s++)
	{
		unsigned char c;
		int			n;

		if (*p == '\0')
			return 0;
		if (fold((unsigned char) *p) == fold(*s))
		{
			p++;
			continue;
		}
		n = escape_at(p, &c);
		if (n == 0 || fold(c) != fold(*s))
			return 0;
		p += n;
	}
	return p - start;
}

/*
 * secrets_redact
 *		text with every secret this backend has used replaced by
 *		"[redacted]".  text must be valid in the server encoding; returns
 *		text itself when there is nothing to redact, else a palloc'd copy.
 *		Where two secrets match at one place, the longer match wins.
 */
char *
secrets_redact(const char *text)
{
	StringInfoData buf;
	const char *p;
	const char *copied = text;	/* text before this is in buf */

	if (text == NULL || nsecrets == 0)
		return (char *) text;

	buf.data = NULL;
	for (p = text; *p;)
	{
		uint64		candidates = starts[fold((unsigned char) *p)];
		unsigned char c;
		size_t		best = 0;
		int			len;

		if (escape_at(p, &c) > 0)
			candidates |= starts[fold(c)];
		for (int i = 0; candidates != 0 && i < nsecrets; i++)
		{
			if (candidates & (UINT64CONST(1) << i))
			{
				size_t		n = match_length(p, secret_list[i]);

				best = Max(best, n);
			}
		}
		if (best > 0)
		{
			if (buf.data == NULL)
				initStringInfo(&buf);
			appendBinaryStringInfo(&buf, copied, p - copied);
			appendStringInfoString(&buf, SECRETS_REDACTED);
			p += best;
			copied = p;
			continue;
		}
		/* on to the next character, never into the middle of one */
		len = pg_mblen(p);
		while (len-- > 0 && *p)
			p++;
	}
	if (buf.data == NULL)
		return (char *) text;
	appendStringInfoString(&buf, copied);
	return buf.data;
}
