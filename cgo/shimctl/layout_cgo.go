//go:build cgo

package shimctl

/*
#cgo CFLAGS: -I${SRCDIR}/..
#include <stddef.h>
#include "sluice_proto.h"

static size_t off_usage_live(void) { return offsetof(struct sluice_usage_page, live_bytes); }
static size_t off_usage_peak(void) { return offsetof(struct sluice_usage_page, peak_bytes); }
static size_t off_usage_allocs(void) { return offsetof(struct sluice_usage_page, allocs); }
static size_t off_usage_frees(void) { return offsetof(struct sluice_usage_page, frees); }
static size_t off_usage_budget(void) { return offsetof(struct sluice_usage_page, budget); }
static size_t off_usage_oom(void) { return offsetof(struct sluice_usage_page, oom_refused); }
static size_t off_usage_prefetches(void) { return offsetof(struct sluice_usage_page, prefetches); }
static size_t off_usage_evictions(void) { return offsetof(struct sluice_usage_page, evictions); }
static size_t off_usage_inflight(void) { return offsetof(struct sluice_usage_page, prefetch_inflight); }
static size_t off_reg_function(void) { return offsetof(struct sluice_register, function_id); }
static size_t off_reg_uuids(void) { return offsetof(struct sluice_register, uuids); }
static size_t off_reg_bytes(void) { return offsetof(struct sluice_register, bytes); }
static size_t off_cmd_arg(void) { return offsetof(struct sluice_command, arg); }
static size_t off_res_usage(void) { return offsetof(struct sluice_result, usage); }
static size_t off_res_duration(void) { return offsetof(struct sluice_result, duration_ns); }
*/
import "C"

// cLayout reports sizes, offsets and constants as the C compiler sees them
// in sluice_proto.h, for the layout test.
func cLayout() map[string]int {
	return map[string]int{
		"magic":              int(C.SLUICE_PROTO_MAGIC),
		"version":            int(C.SLUICE_PROTO_VERSION),
		"usage_magic":        int(C.SLUICE_USAGE_MAGIC),
		"page_size":          int(C.SLUICE_USAGE_PAGE_SIZE),
		"function_id_max":    int(C.SLUICE_FUNCTION_ID_MAX),
		"max_devices":        int(C.SLUICE_MAX_DEVICES),
		"max_msg":            int(C.SLUICE_MAX_MSG),
		"kind_count":         int(C.SLUICE_KIND_COUNT),
		"msg_register":       int(C.SLUICE_MSG_REGISTER),
		"msg_welcome":        int(C.SLUICE_MSG_WELCOME),
		"msg_command":        int(C.SLUICE_MSG_COMMAND),
		"msg_result":         int(C.SLUICE_MSG_RESULT),
		"op_prefetch":        int(C.SLUICE_OP_PREFETCH_DEVICE),
		"op_evict":           int(C.SLUICE_OP_EVICT_HOST),
		"op_budget":          int(C.SLUICE_OP_SET_BUDGET),
		"op_usage":           int(C.SLUICE_OP_REPORT_USAGE),
		"reg_usage_page":     int(C.SLUICE_REG_USAGE_PAGE),
		"reg_converting":     int(C.SLUICE_REG_CONVERTING),
		"reg_forked":         int(C.SLUICE_REG_FORKED),
		"reg_again":          int(C.SLUICE_REG_AGAIN),
		"sizeof_hdr":         int(C.sizeof_struct_sluice_hdr),
		"sizeof_register":    int(C.sizeof_struct_sluice_register),
		"sizeof_welcome":     int(C.sizeof_struct_sluice_welcome),
		"sizeof_command":     int(C.sizeof_struct_sluice_command),
		"sizeof_result":      int(C.sizeof_struct_sluice_result),
		"sizeof_usage":       int(C.sizeof_struct_sluice_usage_page),
		"off_usage_live":     int(C.off_usage_live()),
		"off_usage_peak":     int(C.off_usage_peak()),
		"off_usage_allocs":   int(C.off_usage_allocs()),
		"off_usage_frees":    int(C.off_usage_frees()),
		"off_usage_budget":   int(C.off_usage_budget()),
		"off_usage_oom":      int(C.off_usage_oom()),
		"off_usage_pref":     int(C.off_usage_prefetches()),
		"off_usage_evict":    int(C.off_usage_evictions()),
		"off_usage_inflight": int(C.off_usage_inflight()),
		"off_reg_function":   int(C.off_reg_function()),
		"off_reg_uuids":      int(C.off_reg_uuids()),
		"off_reg_bytes":      int(C.off_reg_bytes()),
		"off_cmd_arg":        int(C.off_cmd_arg()),
		"off_res_usage":      int(C.off_res_usage()),
		"off_res_duration":   int(C.off_res_duration()),
		"status_unknown_op":  int(C.SLUICE_ERR_UNKNOWN_OP),
		"status_unavail":     int(C.SLUICE_ERR_UNAVAILABLE),
		"kind_device":        int(C.SLUICE_KIND_DEVICE),
		"kind_app_managed":   int(C.SLUICE_KIND_APP_MANAGED),
		"kind_graph":         int(C.SLUICE_KIND_GRAPH),
	}
}
