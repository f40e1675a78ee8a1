# Make fragment for the offline Pulumi toolchain; include it from the top
# Makefile:   include toolchain/toolchain.mk
#
#   make toolchain        build (or reuse) the cached CLI + plugins
#   make toolchain-smoke  prove CLI, language host and providers load
#
# Recipes that need the toolchain source the env first, e.g.
#   $(TOOLCHAIN_ENV) && pulumi preview
# (SHELL must be bash for `.`/BASH_SOURCE; this fragment sets nothing global
# besides the TOOLCHAIN_* variables read from versions.env.)

TOOLCHAIN_MK_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
include $(TOOLCHAIN_MK_DIR)/versions.env

TOOLCHAIN_ENV := . $(abspath $(TOOLCHAIN_MK_DIR))/env.sh

.PHONY: toolchain toolchain-smoke
toolchain:
	@bash $(TOOLCHAIN_MK_DIR)/build.sh

toolchain-smoke: toolchain
	@bash $(TOOLCHAIN_MK_DIR)/smoke.sh
