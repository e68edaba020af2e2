from genreshift.cli import main

raise SystemExit(main())
