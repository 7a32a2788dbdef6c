/*
 * EMULATOR / TEST DOUBLE -- internals of Sluice's fake CUDA driver.
 */
#ifndef SLUICE_FAKE_INTERNAL_H
#define SLUICE_FAKE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#define FK_MAX_PARAMS 64
#define FK_NAME_MAX 256

/* One kernel entry point parsed from PTX text. */
struct fk_sig {
	char name[FK_NAME_MAX];
	int nparams;
	uint32_t size[FK_MAX_PARAMS];
	uint32_t align[FK_MAX_PARAMS];
	uint32_t offset[FK_MAX_PARAMS]; /* in the packed CU_LAUNCH_PARAM_BUFFER layout */
	uint32_t total;
};

/* Parse every .entry of a PTX module. Returns the number of entries (>= 0)
 * and a malloc'ed array in *out, or -1 if the text is not PTX. */
int fk_ptx_parse(const char *text, size_t len, struct fk_sig **out);

#endif
