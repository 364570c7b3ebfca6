# man/local.mk
# The manual pages: hand-written roff templates; make writes this build's
# paths (pid file and control socket directory, configuration directory) into
# them.  test_install.py renders both with every groff warning on.
man_MANS = man/spindle.8 man/spindle.conf.5
EXTRA_DIST += man/spindle.8.in man/spindle.conf.5.in
CLEANFILES += $(man_MANS)

man/spindle.8: man/spindle.8.in Makefile
	$(AM_V_GEN)$(MKDIR_P) man && $(sp_subst) $(srcdir)/man/spindle.8.in > $@.tmp && mv $@.tmp $@
man/spindle.conf.5: man/spindle.conf.5.in Makefile
	$(AM_V_GEN)$(MKDIR_P) man && $(sp_subst) $(srcdir)/man/spindle.conf.5.in > $@.tmp && mv $@.tmp $@
