"""The member portal (`/app`) and the admin console (`/admin`): pages, sessions, languages."""
