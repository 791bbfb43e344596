/*
 * Samplesheet -> the four BraTS-space images of each row, its brain mask and its reference.
 * dicom_dir rows and rows naming DICOM series folders are converted, native rows are preprocessed
 * (with transforms back to native space and the brain mask preprocess makes), brats rows are used
 * as they are, with the brain mask their `brainmask` column names (none otherwise): the sheet is the
 * whole truth about a row, as in `gliocascade run`.
 */
include { samplesheetToList } from 'plugin/nf-schema'
include { CONVERT           } from '../../../modules/local/convert'
include { PREPROCESS        } from '../../../modules/local/preprocess'

workflow INPUT_CHECK {
    take:
    samplesheet

    main:
    table = samplesheetToList(samplesheet, "${projectDir}/assets/schema_input.json")
    refuseCaseCollisions(table)
    rows = channel
        .fromList(table)
        .map { meta, t1, t1ce, t2, flair, dicom_dir, seg, brainmask ->
            def m = meta + [space: meta.space ?: 'native', label_convention: meta.label_convention ?: '2019']
            [m, t1, t1ce, t2, flair, dicom_dir, seg, brainmask]
        }
        .branch { row ->
            dicom: row[5] || row[1..4].any { f -> f && f.isDirectory() }
            brats: row[0].space == 'brats'
            native: true
        }

    CONVERT(rows.dicom.map { row -> [row[0], row[5] ?: [], row[1] ?: [], row[2] ?: [], row[3] ?: [], row[4] ?: []] })
    atlas = params.atlas ? file(params.atlas, checkIfExists: true) : []
    native_images = rows.native.map { row -> [row[0], row[1], row[2], row[3], row[4]] }.mix(CONVERT.out.images)
    PREPROCESS(native_images, atlas)

    preprocessed = PREPROCESS.out.images
        .join(PREPROCESS.out.brainmask)
        .map { meta, t1, t1ce, t2, flair, mask -> [meta, t1, t1ce, t2, flair, mask] }
    brats_cases = rows.brats.map { row -> [row[0], row[1] ?: [], row[2] ?: [], row[3] ?: [], row[4] ?: [], row[7] ?: []] }

    emit:
    cases      = preprocessed.mix(brats_cases)   // [meta, t1, t1ce, t2, flair, brain mask or []]
    transforms = PREPROCESS.out.transforms.mix(rows.brats.map { row -> [row[0], []] })
    references = rows.dicom.mix(rows.native, rows.brats).map { row -> [row[0], row[6] ?: []] }
    failures   = CONVERT.out.refusal.mix(PREPROCESS.out.refusal)
    // for the report's case pages: preprocess's record (its QC block) and the native T1Gd it read
    records    = PREPROCESS.out.provenance.map { meta, f -> [meta, 'provenance_preprocess', f] }
        .mix(native_images.map { row -> [row[0], 'native_t1ce', row[2]] })
}

// Case ids that differ only in case collide on case-insensitive file systems: refused, as `run` does.
def refuseCaseCollisions(table) {
    def seen = [:]
    table.each { row ->
        def id = row[0].id.toString()
        def key = id.toLowerCase()
        if (seen.containsKey(key)) {
            error("samplesheet: case_id '${id}' differs from '${seen[key]}' only in case (they collide on case-insensitive file systems)")
        }
        seen[key] = id
    }
}
