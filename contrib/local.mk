# contrib/local.mk
# Examples `make install` puts in $(docdir)/examples/ (share/doc/spindle/examples):
# a systemd unit and a logrotate snippet, written with this build's paths, and
# the annotated configuration.  Nothing goes to /lib/systemd or /etc/logrotate.d:
# copy them there (a distribution package would).

# Replaces @NAME@ in a template by the fully expanded directory of this build
# (make expands ${prefix} in them; configure would leave it as written).
sp_subst = sed -e 's|@sbindir[@]|$(sbindir)|g' \
	-e 's|@sysconfdir[@]|$(sysconfdir)|g' \
	-e 's|@localstatedir[@]|$(localstatedir)|g' \
	-e 's|@rundir[@]|$(SP_RUNDIR)|g' \
	-e 's|@docdir[@]|$(docdir)|g' \
	-e 's|@PACKAGE_VERSION[@]|$(PACKAGE_VERSION)|g'

examplesdir = $(docdir)/examples
examples_DATA = contrib/spindle.service docs/spindle.socket contrib/spindle.logrotate \
	spindle.conf.example
EXTRA_DIST += contrib/spindle.logrotate.in
CLEANFILES += contrib/spindle.service contrib/spindle.logrotate

# The unit is docs/spindle.service (the one docs/operations.md shows, written
# for /usr/sbin and /etc) with this build's paths.  RuntimeDirectory=spindle
# makes systemd create /run/spindle: it is commented out unless that is where
# this build keeps the pid file and control socket (--runstatedir=/run).
contrib/spindle.service: docs/spindle.service Makefile
	$(AM_V_GEN)$(MKDIR_P) contrib && \
	if test "$(SP_RUNDIR)" = /run; then rt=; else \
	  rt='s|^RuntimeDirectory=.*|# Not so in this build: they are in $(SP_RUNDIR)/spindle, which the master creates.\n#&|'; \
	fi && \
	sed -e 's|/usr/sbin/spindle|$(sbindir)/spindle|g' \
	    -e 's|/etc/spindle/|$(sysconfdir)/spindle/|g' \
	    -e "$$rt" $(srcdir)/docs/spindle.service > $@.tmp && mv $@.tmp $@

contrib/spindle.logrotate: contrib/spindle.logrotate.in Makefile
	$(AM_V_GEN)$(MKDIR_P) contrib && \
	$(sp_subst) $(srcdir)/contrib/spindle.logrotate.in > $@.tmp && mv $@.tmp $@
