# shared/http.mk
