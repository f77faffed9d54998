.PHONY: demo test lint bench clean

demo:          ## run the demo (bootstraps .venv)
	scripts/demo

test:          ## lint, type-check and run the test suite (bootstraps .venv)
	scripts/test

bench:         ## run the benchmarks side by side with paho-mqtt and robmqtt
	benchmarks/run

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache
