# Tables 4 and 7 are rules of workflow/rules/artifacts.smk now, generated like every other artifact from the
# registry mpo.artifacts.registry; this file stays only because the Snakefile includes it (drop the include with it).
