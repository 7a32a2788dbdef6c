# Scheduling core and simulator (issue 3).
#   make sim-eval   regenerates every table of docs/EVALUATION.md into
#                   build/eval/tables.md (needs python3; the Azure and Ilúvatar
#                   sections need /work/shared/traces, else they are skipped).
# The core and simulator benchmarks run under bench-go; `make demo` runs
# `sluice sim` on the embedded default workload.
.PHONY: sim-eval
sim-eval: $(BUILD)/sluice
	@mkdir -p $(BUILD)/eval
	SLUICE=./$(BUILD)/sluice python3 daemon/sim/eval/evaluate.py $(BUILD)/eval > $(BUILD)/eval/tables.md
	@echo "wrote $(BUILD)/eval/tables.md"
