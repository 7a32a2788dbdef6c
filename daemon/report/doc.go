// Package report turns simulator results into the evaluation's outputs:
// summary.json, invocations.csv, PNG plots and a printed comparison table.
package report
