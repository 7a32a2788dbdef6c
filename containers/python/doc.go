// Package python embeds Sluice's Python 3 function runtime; see Source.
package python
