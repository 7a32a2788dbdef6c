// Package workload turns serverless traces into GPU workloads for the
// simulator: it parses Azure Functions 2019 trace directories and
// Ilúvatar-format traces (errors name file and line), maps trace functions
// onto the GPU function catalog, and generates arrivals the way the
// MQFQ-Sticky evaluation did (empirical inter-arrival CDFs, seeded, scaled
// to a target GPU utilization).
//
// Embedded data (see data/README.md for attribution): the GPU function
// catalog measured on a V100 in the MQFQ-Sticky evaluation, and the default
// workload's source, a 24-function subset of the Azure 2019 sample.
package workload
