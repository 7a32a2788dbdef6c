/*
 * EMULATOR / TEST DOUBLE -- part of Sluice's fake CUDA driver.
 *
 * A small PTX reader: finds `.entry name ( params )` declarations and the
 * size and alignment of each parameter, so cuLaunchKernel can copy the
 * arguments and find the device pointers a kernel touches. It does not
 * read instructions: kernels are emulated by name (see fakecuda.c).
 */
#define _GNU_SOURCE
#include "fake_internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static const char *skip_ws(const char *p, const char *end)
{
	for (;;) {
		while (p < end && isspace((unsigned char)*p))
			p++;
		if (p + 1 < end && p[0] == '/' && p[1] == '/') {
			while (p < end && *p != '\n')
				p++;
			continue;
		}
		if (p + 1 < end && p[0] == '/' && p[1] == '*') {
			p += 2;
			while (p + 1 < end && !(p[0] == '*' && p[1] == '/'))
				p++;
			p = p + 2 < end ? p + 2 : end;
			continue;
		}
		return p;
	}
}

static int is_ident(char c) { return isalnum((unsigned char)c) || c == '_' || c == '$' || c == '.'; }

/* Read one token (identifier-ish, or a single punctuation char). */
static const char *token(const char *p, const char *end, char *buf, size_t cap)
{
	p = skip_ws(p, end);
	size_t n = 0;
	if (p < end && is_ident(*p)) {
		while (p < end && is_ident(*p)) {
			if (n + 1 < cap)
				buf[n++] = *p;
			p++;
		}
	} else if (p < end) {
		if (cap > 1)
			buf[n++] = *p;
		p++;
	}
	buf[n] = 0;
	return p;
}

static uint32_t type_size(const char *t)
{
	/* .u64 .s64 .b64 .f64 .u32 ... .pred */
	if (t[0] != '.' || strlen(t) < 3)
		return 0;
	char k = t[1];
	if (k != 'u' && k != 's' && k != 'b' && k != 'f')
		return 0;
	int bits = atoi(t + 2);
	if (bits == 8 || bits == 16 || bits == 32 || bits == 64)
		return (uint32_t)bits / 8;
	return 0;
}

int fk_ptx_parse(const char *text, size_t len, struct fk_sig **out)
{
	*out = NULL;
	if (!text)
		return -1;
	const char *end = text + len;
	if (!memmem(text, len, ".version", 8) || !memmem(text, len, ".target", 7))
		return -1;
	int cap = 8, n = 0;
	struct fk_sig *v = calloc((size_t)cap, sizeof(*v));
	if (!v)
		return -1;
	const char *p = text;
	char tok[FK_NAME_MAX];
	while (p < end) {
		const char *q = memmem(p, (size_t)(end - p), ".entry", 6);
		if (!q)
			break;
		p = q + 6;
		if (p < end && is_ident(*p))
			continue; /* e.g. ".entry_foo" */
		if (n == cap) {
			struct fk_sig *nv = realloc(v, (size_t)cap * 2 * sizeof(*v));
			if (!nv)
				break;
			v = nv;
			cap *= 2;
		}
		struct fk_sig *s = &v[n];
		memset(s, 0, sizeof(*s));
		p = token(p, end, tok, sizeof(tok));
		if (!tok[0] || !is_ident(tok[0]))
			continue;
		memcpy(s->name, tok, sizeof(s->name));
		p = token(p, end, tok, sizeof(tok));
		if (strcmp(tok, "(") == 0) {
			/* params: .param .TYPE [.ptr .global .align N] NAME [ [N] ] , ... ) */
			for (;;) {
				p = token(p, end, tok, sizeof(tok));
				if (!tok[0] || strcmp(tok, ")") == 0)
					break;
				if (strcmp(tok, ",") == 0)
					continue;
				if (strcmp(tok, ".param") != 0)
					continue;
				uint32_t sz = 0, al = 0, count = 1;
				for (;;) {
					p = token(p, end, tok, sizeof(tok));
					if (!tok[0])
						break;
					if (strcmp(tok, ".align") == 0) {
						p = token(p, end, tok, sizeof(tok));
						al = (uint32_t)atoi(tok);
						continue;
					}
					if (tok[0] == '.') {
						uint32_t ts = type_size(tok);
						if (ts)
							sz = ts;
						continue; /* .ptr .global .const ... */
					}
					/* the parameter name; maybe followed by [N] */
					const char *r = skip_ws(p, end);
					if (r < end && *r == '[') {
						r++;
						count = (uint32_t)strtoul(r, NULL, 10);
						while (r < end && *r != ']')
							r++;
						p = r < end ? r + 1 : end;
					}
					break;
				}
				if (sz == 0)
					sz = 1;
				if (al == 0)
					al = sz;
				if (s->nparams < FK_MAX_PARAMS) {
					int i = s->nparams++;
					s->size[i] = sz * (count ? count : 1);
					s->align[i] = al;
					uint32_t off = (s->total + al - 1) / al * al;
					s->offset[i] = off;
					s->total = off + s->size[i];
				}
			}
		}
		n++;
	}
	*out = v;
	return n;
}
