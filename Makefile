# `make mirror` and `make test` are all a newcomer needs; both go through `make setup`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
ML5_SHA256 := 8906ded3234dd3792a2dcef790c1f27033f059313f8b85bc8f81e10420e8c346
ML5_LICENSE_SHA256 := 356410c13e77ccdd6e69367a0961bf2bb7aeaea16b908c42e51c39963b7f18c7
ML5 := web/vendor/ml5.min.js web/vendor/ml5.LICENSE.md

.PHONY: setup browser test test-quick mirror bench wheel clean

setup: $(VENV)/.installed web/node_modules/.installed $(ML5)

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[test]' 'setuptools>=77'  # setuptools: `make wheel` builds offline
	touch $@

web/node_modules/.installed: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# ml5.js 0.12.2, the last release with styleTransfer: only its self-contained bundle
# (`npm install ml5@0.12.2` would pull ~600 MB it does not need), and its licence.
# Checked against known hashes.
$(ML5) &:
	mkdir -p web/vendor/.ml5 && cd web/vendor/.ml5 && npm pack ml5@0.12.2 --silent >/dev/null \
		&& tar xzf ml5-0.12.2.tgz package/dist/ml5.min.js package/LICENSE.md \
		&& printf '%s  %s\n' $(ML5_SHA256) package/dist/ml5.min.js $(ML5_LICENSE_SHA256) package/LICENSE.md \
			| sha256sum -c --quiet
	mv web/vendor/.ml5/package/dist/ml5.min.js web/vendor/ml5.min.js
	mv web/vendor/.ml5/package/LICENSE.md web/vendor/ml5.LICENSE.md && rm -rf web/vendor/.ml5

# Browser tests drive Debian's Chromium with Playwright (never `playwright install`).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
		else \
			echo "Chromium is missing and apt-get is not usable here: install Debian's 'chromium' package to run the browser tests (they are skipped without it)."; \
		fi; }

test: setup browser
	$(BIN)/pytest -q --durations=25  # the slowest tests in every log: CI must stay well under 20 minutes

# Everything but the tests marked slow or browser (see pyproject.toml): a few minutes, for while you work.
test-quick: setup
	$(BIN)/pytest -q -m "not slow and not browser" --durations=10

mirror: setup
	$(BIN)/stylemirror mirror

bench: setup browser
	$(BIN)/stylemirror bench stylize
	$(BIN)/stylemirror bench stylize --arch lite
	$(BIN)/stylemirror bench train --steps 3 --variants
	$(BIN)/stylemirror bench data
	$(BIN)/stylemirror bench mirror

# dist/stylemirror-VERSION-py3-none-any.whl: the package with the page inside, for
# `pip install` / `pipx install` anywhere. build/, setuptools' scratch folder, goes before and
# after: files left in it would land in the next wheel.
wheel: setup
	rm -rf build
	$(BIN)/pip wheel -q --no-deps --no-build-isolation -w dist .
	rm -rf build
	@ls -l dist/stylemirror-*.whl

clean:
	rm -rf $(VENV) web/node_modules web/vendor build dist
