"""Reading runs back for people: metrics summaries, comparisons across runs, reports."""
