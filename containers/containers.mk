# Function runtime (issue 6): example function binaries, built static (no
# cgo) so their images need no libraries. `sluice image build
# containers/functions/<name>` turns them into images.
FN_GO_SOURCES := $(shell find containers/protocol containers/functions -name '*.go' 2>/dev/null)

$(BUILD)/fn-echo: $(FN_GO_SOURCES)
	@mkdir -p $(BUILD)
	CGO_ENABLED=0 $(GO) build -o $@ ./containers/functions/echo

$(BUILD)/fn-ow-echo: $(FN_GO_SOURCES)
	@mkdir -p $(BUILD)
	CGO_ENABLED=0 $(GO) build -o $@ ./containers/functions/ow-echo

BUILD_TARGETS += $(BUILD)/fn-echo $(BUILD)/fn-ow-echo

# The adapter that serves the function protocol for run-once programs
# ("adapter": "exec" in function.json).
$(BUILD)/sluice-exec: $(FN_GO_SOURCES) $(wildcard containers/execadapter/*.go)
	@mkdir -p $(BUILD)
	CGO_ENABLED=0 $(GO) build -o $@ ./containers/execadapter

BUILD_TARGETS += $(BUILD)/sluice-exec

# The example functions' images in the local Docker engine (needs a running
# dockerd; not part of `make build`).
.PHONY: function-images
function-images: $(BUILD)/sluice $(BUILD)/fn-echo $(BUILD)/fn-ow-echo $(BUILD)/sluice-exec
	for d in echo python-hello ow-echo; do ./$(BUILD)/sluice image build containers/functions/$$d || exit 1; done
	if [ -f $(BUILD)/gpu-matmul ]; then ./$(BUILD)/sluice image build containers/functions/gpu-matmul; fi
