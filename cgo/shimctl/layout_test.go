//go:build cgo

package shimctl

import "testing"

// The Go codec's idea of every size, offset and number must match the C
// compiler's reading of sluice_proto.h.
func TestLayoutMatchesHeader(t *testing.T) {
	c := cLayout()
	want := map[string]int{
		"magic":              protoMagic,
		"version":            protoVersion,
		"usage_magic":        usageMagic,
		"page_size":          usagePageSize,
		"function_id_max":    functionIDMax,
		"max_devices":        maxDevices,
		"max_msg":            maxMsg,
		"kind_count":         KindCount,
		"msg_register":       msgRegister,
		"msg_welcome":        msgWelcome,
		"msg_command":        msgCommand,
		"msg_result":         msgResult,
		"op_prefetch":        int(OpPrefetchDevice),
		"op_evict":           int(OpEvictHost),
		"op_budget":          int(OpSetBudget),
		"op_usage":           int(OpReportUsage),
		"reg_usage_page":     regUsagePage,
		"reg_converting":     regConverting,
		"reg_forked":         regForked,
		"reg_again":          regAgain,
		"sizeof_hdr":         hdrSize,
		"sizeof_register":    registerSize,
		"sizeof_welcome":     welcomeSize,
		"sizeof_command":     commandSize,
		"sizeof_result":      resultSize,
		"sizeof_usage":       usagePageLayout,
		"off_usage_live":     offLive,
		"off_usage_peak":     offPeak,
		"off_usage_allocs":   offAllocs,
		"off_usage_frees":    offFrees,
		"off_usage_budget":   offBudget,
		"off_usage_oom":      offOOMRefused,
		"off_usage_pref":     offPrefetches,
		"off_usage_evict":    offEvictions,
		"off_usage_inflight": offInflight,
		"off_reg_function":   hdrSize + 16,
		"off_reg_uuids":      hdrSize + 16 + functionIDMax,
		"off_reg_bytes":      hdrSize + 16 + functionIDMax + maxDevices*16,
		"off_cmd_arg":        32,
		"off_res_usage":      48,
		"off_res_duration":   40,
		"status_unknown_op":  StatusUnknownOp,
		"status_unavail":     StatusUnavailable,
		"kind_device":        int(KindDevice),
		"kind_app_managed":   int(KindAppManaged),
		"kind_graph":         int(KindGraph),
	}
	for name, w := range want {
		got, ok := c[name]
		if !ok {
			t.Errorf("%s: not reported by the C side", name)
			continue
		}
		if got != w {
			t.Errorf("%s: C says %d, Go says %d", name, got, w)
		}
	}
}
